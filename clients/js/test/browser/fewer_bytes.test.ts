// Deltas and a filter through the SDK in a real headless Chromium, on a
// real node: the page sees every full document and only the publications
// its filter passes, while the node counts the deltas it sent.

import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { FEWER_BYTES_ENV, Node, Redis, killAll, stateDocument, until } from "../harness.js";
import { openPage } from "./page.js";

after(killAll);

interface Seen {
  ready: boolean;
  documents: unknown[];
  prices: { data: unknown; tags?: Record<string, string> }[];
  gaps: number;
}

describe("deltas and filters in Chromium", () => {
  it("hands the page full documents and only what its filter passes", async () => {
    const redis = await Redis.start();
    const node = await Node.start(redis, FEWER_BYTES_ENV);
    // A page of the demo's origin without the demo: the SDK is imported in it.
    const { page, close } = await openPage("/demo/blank");
    try {
      await page.evaluate(async (url: string) => {
        const sdk = "/dist/index.js"; // resolved by the browser, not by the compiler
        const { Client } = (await import(sdk)) as typeof import("../../src/index.js");
        const seen = { ready: false, documents: [] as unknown[], prices: [] as unknown[], gaps: 0 };
        (window as unknown as { seen: typeof seen }).seen = seen;
        const client = new Client(url);
        await client.connect();
        const state = client.subscribe("state:page", { delta: "fossil" });
        state.on("publication", (p) => seen.documents.push(p.data));
        const prices = client.subscribe("prices:page", { filter: { key: "ticker", cmp: "eq", val: "BTC" } });
        prices.on("publication", (p) => seen.prices.push({ data: p.data, tags: p.tags }));
        prices.on("gap", () => seen.gaps++);
        await Promise.all([state.ready(), prices.ready()]);
        seen.ready = true;
      }, node.url);
      const seen = async () => (await page.evaluate("window.seen")) as Seen;
      await until("the page's subscriptions", async () => (await seen()).ready);
      for (let n = 1; n <= 4; n++) {
        redis.cli("FCALL", "switchyard_publish", "1", "state:page", stateDocument(n));
        const ticker = n % 2 === 0 ? "BTC" : "ETH";
        redis.cli("FCALL", "switchyard_publish", "1", "prices:page", String(n), "", JSON.stringify({ ticker }));
      }
      await until("four documents and two prices", async () => {
        const now = await seen();
        return now.documents.length === 4 && now.prices.length === 2;
      });
      const now = await seen();
      assert.deepEqual(
        now.documents,
        [1, 2, 3, 4].map((n) => JSON.parse(stateDocument(n)) as unknown),
      );
      assert.deepEqual(now.prices, [
        { data: 2, tags: { ticker: "BTC" } },
        { data: 4, tags: { ticker: "BTC" } },
      ]);
      assert.equal(now.gaps, 0);
      assert.equal(await node.metric("switchyard_delta_deliveries_total"), 3);
    } finally {
      await close();
    }
  });
});
