// The demo page in a real headless Chromium, through haproxy in front of
// two `switchyard` nodes and Redis: publications from a backend's FCALL
// reach it; the node it is on is SIGKILLed; it ends up on the other node,
// says it is connected again, and has every offset once, in order.

import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { Haproxy, Node, Redis, fcall, killAll, until } from "../harness.js";
import { openDemo } from "./page.js";

after(killAll);

/** How many client connections a node holds (its /metrics). */
async function connections(node: Node): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${node.port}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith("switchyard_connections "));
  return Number(line?.split(" ")[1] ?? 0);
}

describe("the demo page in Chromium", () => {
  it("goes offline and back without losing a tick", async () => {
    const redis = await Redis.start();
    const node = await Node.start(redis);
    const { context, demo, close } = await openDemo(node.url);
    try {
      for (let n = 1; n <= 10; n++) fcall(redis, "ticker:demo", n);
      await until("ten ticks", async () => (await demo()).ticker.length === 10);
      await context.setOffline(true);
      await until("the page to notice", async () => (await demo()).state === "connecting");
      for (let n = 11; n <= 20; n++) fcall(redis, "ticker:demo", n);
      await context.setOffline(false);
      await until("tick 20", async () => (await demo()).ticker.at(-1) === 20);
      const state = await demo();
      assert.deepEqual(
        state.ticker,
        Array.from({ length: 20 }, (_, i) => i + 1),
      );
      assert.equal(state.state, "connected");
    } finally {
      await close();
    }
  });

  it("rides out the death of its node with every offset once, in order", async () => {
    const redis = await Redis.start();
    const nodes = [await Node.start(redis), await Node.start(redis)];
    const proxy = await Haproxy.start(nodes);
    const { page, demo, close } = await openDemo(proxy.url);
    try {
      await page.waitForSelector("#state.connected");
      const total = 200;
      for (let n = 1; n <= total; n++) {
        fcall(redis, "ticker:demo", n);
        if (n === 50) {
          await until("the first fifty on the page", async () => (await demo()).ticker.length >= 50);
          const counts = await Promise.all(nodes.map(connections));
          const doomed = nodes[counts.indexOf(Math.max(...counts))];
          doomed.kill();
        }
      }
      await until(`offset ${total} on the page`, async () => (await demo()).ticker.at(-1) === total);
      const state = await demo();
      assert.deepEqual(
        state.ticker,
        Array.from({ length: total }, (_, i) => i + 1),
      );
      assert.deepEqual(state.gaps, []);
      assert.equal(state.state, "connected");
      assert.ok(state.reconnects >= 1, "it moved to the other node");
      assert.equal(await page.textContent("#state"), "connected");
      assert.equal(await page.textContent("#ticks"), String(total));
    } finally {
      await close();
      proxy.process.kill("SIGKILL");
    }
  });
});

describe("permessage-deflate in Chromium", () => {
  it("negotiates compression with the demo page and gets compressed publications", async () => {
    const redis = await Redis.start();
    const node = await Node.start(redis, {
      SWITCHYARD_CLIENT__COMPRESSION: "true",
      SWITCHYARD_CLIENT__COMPRESSION_MIN_SIZE: "16",
    });
    const { demo, close } = await openDemo(node.url);
    try {
      // Every publication frame is over the minimum: each comes compressed,
      // the browser inflates it, and the page shows every tick.
      for (let n = 1; n <= 5; n++) fcall(redis, "ticker:demo", n);
      await until("five ticks", async () => (await demo()).ticker.length === 5);
      assert.deepEqual((await demo()).ticker, [1, 2, 3, 4, 5]);
      const text = await (await fetch(`http://127.0.0.1:${node.port}/metrics`)).text();
      const line = text.split("\n").find((l) => l.startsWith('switchyard_deflated_frames_total{encoding="json"}'));
      assert.ok(Number(line?.split(" ")[1] ?? 0) >= 5, line ?? "no compressed frames");
    } finally {
      await close();
    }
  });
});
