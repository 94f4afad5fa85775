// The fallback transport in a real headless Chromium: the demo page with
// WebSocket removed works through the SDK over Server-Sent Events, and a
// bare EventSource receives the channels of its token's `subs` claim.

import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { Haproxy, Node, Redis, fcall, killAll, token, until } from "../harness.js";
import { openDemo, openPage } from "./page.js";

after(killAll);

describe("Server-Sent Events in Chromium", () => {
  it("runs the demo page over SSE when WebSocket is unavailable, across a node's death", async () => {
    const redis = await Redis.start();
    const nodes = [await Node.start(redis), await Node.start(redis)];
    const proxy = await Haproxy.start(nodes);
    const { page, demo, close } = await openDemo(proxy.url, { withoutWebSocket: true });
    try {
      // Chat: a message sent from the page (POST /sse/command) comes back on its stream.
      await page.fill("#text", "over sse");
      await page.click("#send button");
      await until("the chat message", async () => (await demo()).chat.length === 1);
      assert.match((await page.textContent("#chat li")) ?? "", /over sse/);

      for (let n = 1; n <= 100; n++) {
        fcall(redis, "ticker:demo", n);
        if (n === 30) {
          await until("thirty ticks", async () => (await demo()).ticker.length >= 30);
          const sse = await Promise.all(
            nodes.map(async (node) => {
              const text = await (await fetch(`http://127.0.0.1:${node.port}/metrics`)).text();
              const line = text
                .split("\n")
                .find((l) => l.startsWith('switchyard_transport_connections{transport="sse"}'));
              return Number(line?.split(" ")[1] ?? 0);
            }),
          );
          nodes[sse.indexOf(Math.max(...sse))].kill();
        }
      }
      await until("tick 100", async () => (await demo()).ticker.at(-1) === 100);
      const state = await demo();
      assert.deepEqual(
        state.ticker,
        Array.from({ length: 100 }, (_, i) => i + 1),
      );
      assert.equal(state.state, "connected");
      assert.ok(state.reconnects >= 1);
    } finally {
      await close();
      proxy.process.kill("SIGKILL");
    }
  });

  it("gives a bare EventSource its token's subs channels", async () => {
    const redis = await Redis.start();
    const node = await Node.start(redis);
    const { page, close } = await openPage("/demo/index.html");
    try {
      const url = `http://127.0.0.1:${node.port}/sse?token=${token("ada", 3600, { subs: ["ticker:demo"] })}`;
      await page.evaluate((url) => {
        const w = window as unknown as { frames_: unknown[] };
        w.frames_ = [];
        const source = new EventSource(url);
        source.onmessage = (e) => w.frames_.push(JSON.parse(e.data));
      }, url);
      const frames = async () =>
        (await page.evaluate("window.frames_")) as Record<string, { channel?: string; data?: unknown }>[];
      await until("the sub push", async () => (await frames()).some((f) => f.sub?.channel === "ticker:demo"));
      for (let n = 1; n <= 3; n++) fcall(redis, "ticker:demo", n);
      await until("three pubs", async () => (await frames()).filter((f) => f.pub).length === 3);
      const got = await frames();
      assert.ok(got[0].connect, "the connect reply first");
      assert.deepEqual(
        got.filter((f) => f.pub).map((f) => f.pub.data),
        [1, 2, 3],
      );
    } finally {
      await close();
    }
  });
});
