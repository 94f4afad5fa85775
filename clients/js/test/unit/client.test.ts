// The client's state machine, reconnect rules, backoff, de-duplication,
// gaps, acks, pings and timeouts, against a scripted socket and a mocked
// clock.

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it, mock } from "node:test";
import { Client } from "../../src/client.js";
import { backoffDelay } from "../../src/backoff.js";
import { reconnectAfter } from "../../src/close_codes.js";
import type { Publication } from "../../src/frames.js";
import { FakeSocket } from "./fake_socket.js";

/** Lets promise callbacks run (not a timer: the clock is mocked). */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

function client(options: Record<string, unknown> = {}): Client {
  return new Client(["ws://a/ws", "ws://b/ws"], {
    WebSocket: FakeSocket,
    minReconnectDelay: 1000,
    maxReconnectDelay: 8000,
    ...options,
  });
}

async function connected(c: Client, extra: Record<string, unknown> = {}): Promise<FakeSocket> {
  const ready = c.connect();
  await settle();
  const ws = FakeSocket.last();
  ws.open();
  ws.accept(extra);
  await ready;
  return ws;
}

function pub(offset: number, epoch = "e1"): Publication {
  return { channel: "chat:x", data: { n: offset }, offset, epoch };
}

beforeEach(() => {
  FakeSocket.reset();
  mock.timers.enable({ apis: ["setTimeout"] });
});

afterEach(() => {
  mock.timers.reset();
});

describe("backoff", () => {
  it("stays within full-jitter bounds that double up to the maximum", () => {
    const bounds = { min: 500, max: 20000 };
    for (let attempt = 0; attempt < 10; attempt++) {
      const ceiling = Math.min(20000, 500 * 2 ** attempt);
      assert.equal(
        backoffDelay(attempt, bounds, () => 0),
        0,
      );
      assert.equal(
        backoffDelay(attempt, bounds, () => 0.999999),
        ceiling - 1,
      );
      const d = backoffDelay(attempt, bounds);
      assert.ok(d >= 0 && d < ceiling);
    }
  });

  it("spreads a crowd of clients", () => {
    const delays = new Set(Array.from({ length: 50 }, () => backoffDelay(4, { min: 500, max: 20000 })));
    assert.ok(delays.size > 40, `${delays.size} distinct delays of 50`);
  });

  it("follows the close-code table", () => {
    for (const code of [1001, 4012]) assert.equal(reconnectAfter(code), "at once");
    for (const code of [1000, 1002, 1007, 1009, 4001, 4003]) assert.equal(reconnectAfter(code), "never");
    for (const code of [1006, 1011, 4008, 4009, 4011, 4029]) assert.equal(reconnectAfter(code), "backoff");
  });
});

describe("connection", () => {
  it("goes connecting, connected, and reconnects with backoff to the next URL, resuming", async () => {
    const c = client();
    const states: string[] = [];
    c.on("state", (s) => states.push(s));
    const first = await connected(c);
    assert.deepEqual(states, ["connecting", "connected"]);
    assert.equal(first.url, "ws://a/ws");
    first.serverClose(4008, "slow consumer");
    assert.equal(c.state, "connecting");
    await settle();
    assert.equal(FakeSocket.opened.length, 1, "waits its backoff");
    mock.timers.tick(1000);
    await settle();
    const second = FakeSocket.last();
    assert.equal(second.url, "ws://b/ws");
    second.open();
    assert.deepEqual(second.lastSent("connect")?.connect, { resume: "s1" });
    second.accept({ resumed: true });
    await settle();
    assert.equal(c.state, "connected");
    c.close();
  });

  it("reconnects at once after 1001 and never after 4003", async () => {
    const c = client();
    const ws = await connected(c);
    ws.serverClose(1001);
    mock.timers.tick(0);
    await settle();
    assert.equal(FakeSocket.opened.length, 2, "at once");
    const again = FakeSocket.last();
    again.open();
    again.accept();
    await settle();
    const errors: number[] = [];
    c.on("error", (e) => errors.push(e.code));
    again.serverClose(4003, "unauthorized");
    mock.timers.tick(60000);
    await settle();
    assert.equal(FakeSocket.opened.length, 2, "no reconnect after 4003");
    assert.equal(c.state, "disconnected");
    assert.deepEqual(errors, [4003]);
  });

  it("answers pings and drops a server silent for two ping intervals", async () => {
    const c = client();
    const ws = await connected(c, { ping_interval: 10 });
    ws.receive({ ping: {} });
    assert.deepEqual(ws.sent.at(-1), { pong: {} });
    mock.timers.tick(20000);
    assert.equal(c.state, "connected", "not dead yet");
    mock.timers.tick(1500);
    assert.equal(c.state, "connecting");
    assert.equal(ws.closedWith, 4011);
    c.close();
  });

  it("settles every command within its timeout", async () => {
    const c = client({ timeout: 3000 });
    await connected(c);
    const publish = c.publish("chat:x", { text: "hi" });
    mock.timers.tick(3000);
    await assert.rejects(publish, (e: { kind: string }) => e.kind === "timeout");
    c.close();
    await assert.rejects(c.publish("chat:x", 1), (e: { kind: string }) => e.kind === "closed");
  });
});

describe("rpc", () => {
  it("sends the method and data, resolves with the answer, rejects with the backend's error", async () => {
    const c = client({ data: { device: "test" } });
    const ws = await connected(c);
    assert.deepEqual((ws.lastSent("connect") as { connect: unknown }).connect, { data: { device: "test" } });
    const call = c.rpc("profile.get", { id: 7 });
    await settle();
    const sent = ws.lastSent("rpc") as { id: number; rpc: unknown };
    assert.deepEqual(sent.rpc, { method: "profile.get", data: { id: 7 } });
    ws.receive({ id: sent.id, rpc: { data: { name: "Ada" } } });
    assert.deepEqual(await call, { name: "Ada" });
    const failing = c.rpc("profile.get", { id: 8 });
    await settle();
    const next = ws.lastSent("rpc") as { id: number };
    ws.receive({ id: next.id, error: { code: 1404, message: "no such profile" } });
    await assert.rejects(failing, (e: { code: number }) => e.code === 1404);
    c.close();
  });
});

describe("subscriptions", () => {
  it("delivers each publication once and in order, filling a gap from history", async () => {
    const c = client();
    const ws = await connected(c);
    const sub = c.subscribe("chat:x");
    const seen: number[] = [];
    sub.on("publication", (p) => seen.push(p.offset ?? -1));
    const request = ws.lastSent("subscribe");
    ws.receive({ id: request?.id as number, subscribe: { epoch: "e1", offset: 0 } });
    await sub.ready();
    for (const offset of [1, 2, 2, 3, 1]) ws.receive({ pub: pub(offset) });
    assert.deepEqual(seen, [1, 2, 3]);
    // 6 after 3: 4 and 5 are fetched first, 7 waits behind them.
    ws.receive({ pub: pub(6) });
    ws.receive({ pub: pub(7) });
    const history = ws.lastSent("history") as { id: number; history: Record<string, unknown> };
    assert.deepEqual(history.history, { channel: "chat:x", since: { epoch: "e1", offset: 3 }, limit: 2 });
    assert.deepEqual(seen, [1, 2, 3]);
    ws.receive({ id: history.id, history: { publications: [pub(4), pub(5)], epoch: "e1", offset: 7 } });
    await settle();
    assert.deepEqual(seen, [1, 2, 3, 4, 5, 6, 7]);
    c.close();
  });

  it("tells a gap it could not fill", async () => {
    const c = client();
    const ws = await connected(c);
    const sub = c.subscribe("chat:x", { since: { epoch: "e1", offset: 1 } });
    const seen: number[] = [];
    const gaps: string[] = [];
    sub.on("publication", (p) => seen.push(p.offset ?? -1));
    sub.on("gap", (g) => gaps.push(`${g.reason} ${g.from?.offset}->${g.to.offset}`));
    const request = ws.lastSent("subscribe") as { id: number; subscribe: Record<string, unknown> };
    assert.deepEqual(request.subscribe, { channel: "chat:x", recover: true, epoch: "e1", offset: 1 });
    ws.receive({ id: request.id, subscribe: { epoch: "e1", offset: 1, recovered: true } });
    ws.receive({ pub: pub(4) });
    const history = ws.lastSent("history") as { id: number };
    ws.receive({ id: history.id, error: { code: 112, message: "unrecoverable position" } });
    await settle();
    assert.deepEqual(gaps, ["unrecoverable 1->3"]);
    assert.deepEqual(seen, [4]);
    // History reset: a new epoch starts at 1.
    ws.receive({ pub: pub(1, "e2") });
    assert.deepEqual(gaps, ["unrecoverable 1->3", "epoch 4->1"]);
    assert.deepEqual(seen, [4, 1]);
    c.close();
  });

  it("recovers from its last position when the session is not resumed, and acks in batches", async () => {
    const c = client({ ackInterval: 1000 });
    const ws = await connected(c);
    const sub = c.subscribe("chat:x");
    const request = ws.lastSent("subscribe");
    ws.receive({ id: request?.id as number, subscribe: { epoch: "e1", offset: 10 } });
    await sub.ready();
    for (const offset of [11, 12, 13]) ws.receive({ pub: pub(offset) });
    assert.equal(ws.sent.filter((f) => "ack" in f).length, 0, "batched");
    mock.timers.tick(1000);
    assert.deepEqual(
      ws.sent.filter((f) => "ack" in f),
      [{ ack: { channel: "chat:x", offset: 13 } }],
    );
    ws.serverClose(1001);
    assert.equal(sub.state, "subscribing");
    mock.timers.tick(0);
    await settle();
    const next = FakeSocket.last();
    next.open();
    next.accept({ resumed: false });
    await settle();
    const again = next.lastSent("subscribe") as { id: number; subscribe: Record<string, unknown> };
    assert.deepEqual(again.subscribe, { channel: "chat:x", recover: true, epoch: "e1", offset: 13 });
    const seen: number[] = [];
    sub.on("publication", (p) => seen.push(p.offset ?? -1));
    next.receive({
      id: again.id,
      subscribe: { epoch: "e1", offset: 15, recovered: true, publications: [pub(14), pub(15)] },
    });
    await settle();
    assert.equal(sub.state, "subscribed");
    next.receive({ pub: pub(15) });
    next.receive({ pub: pub(16) });
    assert.deepEqual(seen, [14, 15, 16]);
    c.close();
  });

  it("refreshes its token before it expires", async () => {
    let issued = 0;
    const c = client({ getToken: async () => `t${++issued}`, refreshBefore: 30 });
    const ws = await connected(c, { expires_in: 120 });
    assert.deepEqual(ws.lastSent("connect")?.connect, { token: "t1" });
    // The server stays alive meanwhile (a ping every 20 s).
    for (let at = 0; at < 80000; at += 20000) {
      mock.timers.tick(20000);
      ws.receive({ ping: {} });
    }
    mock.timers.tick(9000);
    await settle();
    assert.equal(ws.lastSent("refresh"), undefined);
    mock.timers.tick(1000);
    await settle();
    const refresh = ws.lastSent("refresh") as { id: number; refresh: { token: string } };
    assert.equal(refresh.refresh.token, "t2");
    ws.receive({ id: refresh.id, refresh: { expires_in: 120 } });
    c.close();
  });
});
