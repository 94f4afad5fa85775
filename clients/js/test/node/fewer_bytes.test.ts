// Deltas, tags and filters through the SDK in Node, against real
// `switchyard` processes on a real Redis: the application sees every full
// document while the wire carries deltas (both encodings, across nodes,
// pretty-printed JSON kept byte for byte), and a filtered subscription sees
// only what passes, with its tags, and no gap for what the filter left out.

import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import WebSocket from "ws";
import { Client, type Publication, type WebSocketConstructor } from "../../src/index.js";
import { FEWER_BYTES_ENV, Node, Redis, killAll, stateDocument, until } from "../harness.js";

after(killAll);

const Ws = WebSocket as unknown as WebSocketConstructor;

for (const encoding of ["json", "protobuf"] as const) {
  describe(`deltas (${encoding})`, () => {
    it("hands the application full documents while deltas cross the wire", async () => {
      const redis = await Redis.start();
      const a = await Node.start(redis, FEWER_BYTES_ENV);
      const b = await Node.start(redis, FEWER_BYTES_ENV);
      const client = new Client(b.url, { WebSocket: Ws, encoding });
      await client.connect();
      const seen: unknown[] = [];
      const sub = client.subscribe("state:game", { delta: "fossil" });
      sub.on("publication", (p) => seen.push(p.data));
      sub.on("gap", (g) => assert.fail(`no gap: ${JSON.stringify(g)}`));
      await sub.ready();
      for (let n = 1; n <= 6; n++) {
        const reply = redis.cli("FCALL", "switchyard_publish", "1", "state:game", stateDocument(n));
        assert.ok(!reply.startsWith("ERR") && reply !== "", reply);
      }
      await until("six documents", () => seen.length === 6);
      assert.deepEqual(
        seen,
        Array.from({ length: 6 }, (_, i) => JSON.parse(stateDocument(i + 1)) as unknown),
      );
      assert.equal(await b.metric("switchyard_delta_deliveries_total"), 5);
      assert.equal(await a.metric("switchyard_delta_deliveries_total"), 0);
      client.close();
    });
  });
}

describe("tags and filters", () => {
  it("delivers only what passes the filter, with its tags, and no gap for the rest", async () => {
    const redis = await Redis.start();
    const a = await Node.start(redis, FEWER_BYTES_ENV);
    const b = await Node.start(redis, FEWER_BYTES_ENV);
    const publisher = new Client(a.url, { WebSocket: Ws });
    const subscriber = new Client(b.url, { WebSocket: Ws, encoding: "protobuf" });
    await Promise.all([publisher.connect(), subscriber.connect()]);
    const got: Publication[] = [];
    const gaps: unknown[] = [];
    const prices = subscriber.subscribe("prices:spot", {
      filter: {
        op: "and",
        nodes: [
          { key: "ticker", cmp: "in", vals: ["BTC", "ETH"] },
          { key: "size", cmp: "gte", val: "10" },
        ],
      },
    });
    prices.on("publication", (p) => got.push(p));
    prices.on("gap", (g) => gaps.push(g));
    await prices.ready();
    const sent = [
      { ticker: "BTC", size: "12" },
      { ticker: "SOL", size: "50" },
      { ticker: "ETH", size: "5" },
      { ticker: "ETH", size: "10" },
    ];
    for (const [i, tags] of sent.entries()) await publisher.publish("prices:spot", { i }, { tags });
    await until("two publications", () => got.length === 2);
    assert.deepEqual(
      got.map((p) => [p.data, p.offset, p.tags]),
      [
        [{ i: 0 }, 1, { ticker: "BTC", size: "12" }],
        [{ i: 3 }, 4, { ticker: "ETH", size: "10" }],
      ],
    );
    assert.deepEqual(gaps, []);
    await assert.rejects(
      subscriber.subscribe("prices:bad", { filter: { key: "size", cmp: "gt", val: "lots" } }).ready(),
      (e: { code?: number }) => e.code === 107,
    );
    publisher.close();
    subscriber.close();
  });
});
