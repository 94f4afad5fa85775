// The SDK in Node against real `switchyard` processes on a real Redis:
// a node SIGKILLed under a steady flow, token refresh, close codes, and a
// clean exit after close().

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, describe, it } from "node:test";
import WebSocket from "ws";
import { Client, type WebSocketConstructor } from "../../src/index.js";
import { DEADLINE, Node, Redis, fcall, killAll, token, until } from "../harness.js";

after(killAll);

const Ws = WebSocket as unknown as WebSocketConstructor;

for (const encoding of ["json", "protobuf"] as const) {
  describe(`a node killed under a steady flow (${encoding})`, () => {
    it("leaves the application with every offset once, in order", async () => {
      const redis = await Redis.start();
      const doomed = await Node.start(redis);
      const survivor = await Node.start(redis);
      const client = new Client([doomed.url, survivor.url], {
        WebSocket: Ws,
        encoding,
        token: token("ada"),
        minReconnectDelay: 100,
        maxReconnectDelay: 1000,
        ackInterval: 50,
      });
      const seen: number[] = [];
      const gaps: unknown[] = [];
      await client.connect();
      const sub = client.subscribe("chat:flow");
      sub.on("publication", (p) => seen.push(p.offset ?? -1));
      sub.on("gap", (g) => gaps.push(g));
      await sub.ready();
      const total = 300;
      for (let n = 1; n <= total; n++) {
        fcall(redis, "chat:flow", n);
        if (n === 100) {
          await until("the first hundred", () => seen.length >= 100);
          doomed.kill();
        }
      }
      await until(`offset ${total}`, () => seen.at(-1) === total);
      assert.deepEqual(
        seen,
        Array.from({ length: total }, (_, i) => i + 1),
      );
      assert.deepEqual(gaps, []);
      assert.equal(client.state, "connected");
      client.close();
    });
  });
}

describe("tokens and close codes", () => {
  it("refreshes an expiring token through getToken and stays connected past its expiry", async () => {
    const redis = await Redis.start();
    const node = await Node.start(redis, { SWITCHYARD_AUTH__REFRESH_GRACE: "1s" });
    let issued = 0;
    const client = new Client(node.url, {
      WebSocket: Ws,
      getToken: async () => {
        issued++;
        return token("ada", 6);
      },
    });
    await client.connect();
    const connectedAt = performance.now();
    await until("a refresh", () => issued >= 2);
    // Past the first token's expiry and grace, the connection is the same one.
    await until("the first token to expire", () => performance.now() - connectedAt > 8000);
    assert.equal(client.state, "connected");
    assert.deepEqual(await client.publish("news", { ok: true }), {});
    client.close();
  });

  it("does not reconnect after 4003", async () => {
    const redis = await Redis.start();
    const node = await Node.start(redis, { SWITCHYARD_AUTH_ALLOW_ANONYMOUS: "false" });
    let sockets = 0;
    class Counting extends WebSocket {
      constructor(url: string, protocols?: string | string[]) {
        super(url, protocols);
        sockets++;
      }
    }
    const client = new Client(node.url, {
      WebSocket: Counting as unknown as WebSocketConstructor,
      token: "not-a-jwt",
      minReconnectDelay: 10,
      maxReconnectDelay: 20,
    });
    const errors: number[] = [];
    client.on("error", (e) => errors.push(e.code));
    await assert.rejects(client.connect(), (e: { code: number }) => e.code === 4003);
    assert.equal(client.state, "disconnected");
    // Given up for good: no reconnect is pending, one socket was opened.
    assert.equal(sockets, 1);
    assert.ok(errors.includes(4003));
  });

  it("reconnects at once after a drain's 1001", async () => {
    const redis = await Redis.start();
    const draining = await Node.start(redis);
    const other = await Node.start(redis);
    // A backoff far longer than the test's deadline: only an immediate
    // reconnect can make it.
    const client = new Client([draining.url, other.url], {
      WebSocket: Ws,
      minReconnectDelay: 10 * DEADLINE,
      maxReconnectDelay: 10 * DEADLINE,
    });
    const codes: number[] = [];
    client.on("disconnected", (d) => codes.push(d.code));
    await client.connect();
    const sub = client.subscribe("chat:moving");
    await sub.ready();
    draining.kill("SIGTERM");
    await until("a 1001", () => codes.includes(1001));
    await until("the other node", () => client.state === "connected" && sub.state === "subscribed");
    fcall(redis, "chat:moving", 1);
    const got = await new Promise((r) => sub.on("publication", (p) => r(p.data)));
    assert.equal(got, 1);
    client.close();
  });

  it("asks for a publish receipt", async () => {
    const redis = await Redis.start();
    const node = await Node.start(redis);
    const client = new Client(node.url, { WebSocket: Ws });
    await client.connect();
    await client.subscribe("chat:receipts").ready();
    const { offset, receipt } = await client.publish("chat:receipts", { n: 1 }, { receipt: true });
    assert.equal(offset, 1);
    assert.deepEqual(receipt, { nodes: 1, clients: 1, unanswered: 0 });
    client.close();
  });

  it("leaves nothing running after close(): Node exits by itself", async () => {
    const redis = await Redis.start();
    const node = await Node.start(redis);
    const script = `
      import WebSocket from "ws";
      import { Client } from "${new URL("../../src/index.js", import.meta.url).href}";
      const client = new Client(${JSON.stringify(node.url)}, { WebSocket, ackInterval: 10 });
      await client.connect();
      const sub = client.subscribe("chat:exit");
      await sub.ready();
      await client.publish("chat:exit", 1);
      await client.history("chat:exit", { limit: 1 });
      client.close();
    `;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
      cwd: new URL("../..", import.meta.url),
      stdio: "inherit",
    });
    const code = await new Promise<number | null>((done) => {
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        done(null);
      }, DEADLINE);
      child.on("exit", (c) => {
        clearTimeout(timer);
        done(c);
      });
    });
    assert.equal(code, 0, "the process exited on its own");
  });
});

for (const encoding of ["json", "protobuf"] as const) {
  describe(`a recovery larger than one reply (${encoding})`, () => {
    it("reports a gap and goes on, without looping", async () => {
      const redis = await Redis.start();
      // Replies of at most 16 KiB: twenty 2 KB publications do not fit.
      const small = {
        SWITCHYARD_CLIENT__MAX_MESSAGE_SIZE: "4096",
        SWITCHYARD_CLIENT__MAX_QUEUE_BYTES: "16384",
        SWITCHYARD_CLIENT__MAX_REPLY_BYTES: "16384",
      };
      const doomed = await Node.start(redis, small);
      const survivor = await Node.start(redis, small);
      let sockets = 0;
      class Counting extends WebSocket {
        constructor(url: string, protocols?: string | string[]) {
          super(url, protocols);
          sockets++;
        }
      }
      const client = new Client([doomed.url, survivor.url], {
        WebSocket: Counting as unknown as WebSocketConstructor,
        encoding,
        token: token("ada"),
        minReconnectDelay: 50,
        maxReconnectDelay: 200,
      });
      const seen: number[] = [];
      const gaps: { reason: string }[] = [];
      await client.connect();
      const sub = client.subscribe("chat:large");
      sub.on("publication", (p) => seen.push(p.offset ?? -1));
      sub.on("gap", (g) => gaps.push(g));
      await sub.ready();
      fcall(redis, "chat:large", 1);
      await until("the first publication", () => seen.length === 1);
      // The node dies; while the client is away (these calls hold the
      // event loop), twenty large publications go by.
      doomed.kill();
      for (let n = 2; n <= 21; n++) {
        const reply = redis.cli("FCALL", "switchyard_publish", "1", "chat:large", JSON.stringify("x".repeat(2000)));
        assert.ok(!reply.startsWith("ERR"), reply);
      }
      await until("the gap", () => gaps.length === 1);
      assert.equal(gaps[0].reason, "unrecoverable");
      fcall(redis, "chat:large", 22);
      await until("the publication after the gap", () => seen.at(-1) === 22);
      assert.deepEqual(seen, [1, 22]);
      assert.equal(client.state, "connected");
      // Settled: more publications come on the same socket, and the gap
      // was reported once, not retried.
      const settled = sockets;
      fcall(redis, "chat:large", 23);
      await until("the next publication", () => seen.at(-1) === 23);
      assert.equal(sockets, settled);
      assert.equal(gaps.length, 1);
      client.close();
    });
  });
}
