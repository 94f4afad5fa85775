// Hostile input at the Pusher door: frames that are not JSON, unknown
// events, forged signatures on the socket and on the API, stale
// timestamps, oversized bodies, floods of client events. Each gets its
// documented error and a metric, and a bystander keeps receiving.

import assert from "node:assert/strict";
import { createHash, createHmac } from "node:crypto";
import { after, before, describe, it } from "node:test";
import Pusher from "pusher";
import WebSocket from "ws";
import { APP_ID, KEY, Node, Redis, SECRET, client, killAll, server, until } from "./harness.js";

/** A raw Pusher connection: what it was sent, as parsed JSON, and how it closed. */
class Raw {
  readonly messages: { event: string; data?: unknown; channel?: string }[] = [];
  closed: number | null = null;

  constructor(readonly ws: WebSocket) {
    ws.on("message", (data) => this.messages.push(JSON.parse(data.toString())));
    ws.on("close", (code) => (this.closed = code));
  }

  static async open(port: number, path = `/app/${KEY}?protocol=7&client=js&version=8.4.0`): Promise<Raw> {
    const raw = new Raw(new WebSocket(`ws://127.0.0.1:${port}${path}`));
    await until("the socket to open", () => raw.ws.readyState === WebSocket.OPEN || raw.closed !== null);
    return raw;
  }

  /** The socket id of `pusher:connection_established`. */
  async socketId(): Promise<string> {
    await until("connection_established", () => this.messages.some((m) => m.event === "pusher:connection_established"));
    const established = this.messages.find((m) => m.event === "pusher:connection_established");
    return JSON.parse(established?.data as string).socket_id;
  }

  send(value: unknown): void {
    this.ws.send(typeof value === "string" ? value : JSON.stringify(value));
  }

  /** Waits for the n-th message (from 1) with `event`, and returns it. */
  async nth(event: string, n = 1): Promise<{ event: string; data?: unknown }> {
    await until(`${event} #${n}`, () => this.messages.filter((m) => m.event === event).length >= n);
    return this.messages.filter((m) => m.event === event)[n - 1];
  }

  /** Error codes of the `pusher:error`s so far. */
  errorCodes(): (number | null)[] {
    return this.messages.filter((m) => m.event === "pusher:error").map((m) => (m.data as { code: number | null }).code);
  }
}

/** An HTTP API request signed like the server libraries sign, with `timestamp` (seconds). */
async function signedPost(port: number, path: string, body: string, timestamp: number, secret = SECRET, sent = body) {
  const params: Record<string, string> = {
    auth_key: KEY,
    auth_timestamp: String(timestamp),
    auth_version: "1.0",
    body_md5: createHash("md5").update(body).digest("hex"),
  };
  const query = Object.keys(params)
    .sort()
    .map((k) => `${k}=${params[k]}`)
    .join("&");
  const signature = createHmac("sha256", secret).update(`POST\n${path}\n${query}`).digest("hex");
  return fetch(`http://127.0.0.1:${port}${path}?${query}&auth_signature=${signature}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: sent,
  });
}

describe("hostile input at the Pusher door", () => {
  let redis: Redis;
  let node: Node;
  const bystanderGot: number[] = [];
  let sent = 0;

  /** The bystander still receives: one more event reaches it. */
  async function bystanderFine(): Promise<void> {
    sent += 1;
    const want = sent;
    await server(node.port).trigger("bystander", "tick", want);
    await until("the bystander's event", () => bystanderGot.includes(want));
  }

  before(async () => {
    redis = await Redis.start();
    node = await Node.start(redis);
    const bystander = client(node.port);
    const channel = bystander.subscribe("bystander");
    channel.bind("tick", (n: number) => bystanderGot.push(n));
    await until("the bystander's subscription", () => channel.subscribed);
  });

  after(() => killAll());

  it("answers frames that are not JSON, binary frames and unknown events with 4300, and keeps the connection", async () => {
    const before = await node.metric("switchyard_pusher_errors_total", 'code="4300"');
    const raw = await Raw.open(node.port);
    await raw.socketId();
    raw.send("this is not json {");
    raw.ws.send(Buffer.from([0, 1, 2, 3]));
    raw.send({ event: "pusher:explode", data: {} });
    raw.send({ no: "event" });
    await until("four errors", () => raw.errorCodes().length === 4);
    assert.deepEqual(raw.errorCodes(), [4300, 4300, 4300, 4300]);
    raw.send({ event: "pusher:ping", data: {} });
    await raw.nth("pusher:pong");
    assert.equal(raw.closed, null);
    assert.equal(await node.metric("switchyard_pusher_errors_total", 'code="4300"'), before + 4);
    await bystanderFine();
    raw.ws.close();
  });

  it("refuses forged channel signatures and sign-ins", async () => {
    const raw = await Raw.open(node.port);
    const socketId = await raw.socketId();
    const forged = createHmac("sha256", "not-the-secret").update(`${socketId}:private-x`).digest("hex");
    raw.send({ event: "pusher:subscribe", data: { channel: "private-x", auth: `${KEY}:${forged}` } });
    const refused = await raw.nth("pusher:subscription_error");
    assert.equal(JSON.parse(refused.data as string).status, 401);
    // Someone else's socket id, signed with the right secret, is no better.
    const stolen = server(node.port).authorizeChannel("1.1", "private-x");
    raw.send({ event: "pusher:subscribe", data: { channel: "private-x", auth: stolen.auth } });
    await raw.nth("pusher:subscription_error", 2);
    // A presence subscription whose channel_data was changed after signing.
    const signed = server(node.port).authorizeChannel(socketId, "presence-x", { user_id: "ada" });
    const changed = JSON.stringify({ user_id: "root" });
    raw.send({ event: "pusher:subscribe", data: { channel: "presence-x", auth: signed.auth, channel_data: changed } });
    await raw.nth("pusher:subscription_error", 3);
    raw.send({ event: "pusher:signin", data: { auth: `${KEY}:${forged}`, user_data: '{"id":"root"}' } });
    await until("the close", () => raw.closed !== null);
    assert.equal(raw.closed, 4009);
    assert.deepEqual(raw.errorCodes(), [4009]);
    await bystanderFine();
  });

  it("closes unknown app keys with 4001 and unsupported protocol versions with 4007", async () => {
    const unknown = await Raw.open(node.port, "/app/no-such-key?protocol=7");
    await until("the close", () => unknown.closed !== null);
    assert.equal(unknown.closed, 4001);
    assert.deepEqual(unknown.errorCodes(), [4001]);
    const old = await Raw.open(node.port, `/app/${KEY}?protocol=2`);
    await until("the close", () => old.closed !== null);
    assert.equal(old.closed, 4007);
    assert.ok((await node.metric("switchyard_pusher_errors_total", 'code="4001"')) >= 1);
  });

  it("rate limits client events per connection with 4301, and refuses them on public channels", async () => {
    const raw = await Raw.open(node.port);
    const socketId = await raw.socketId();
    const auth = server(node.port).authorizeChannel(socketId, "private-flood").auth;
    raw.send({ event: "pusher:subscribe", data: { channel: "private-flood", auth } });
    await raw.nth("pusher_internal:subscription_succeeded");
    for (let i = 0; i < 40; i++) raw.send({ event: "client-flood", channel: "private-flood", data: { i } });
    raw.send({ event: "client-nope", channel: "bystander", data: {} });
    await until(
      "the refusals",
      () => raw.errorCodes().filter((c) => c === 4301).length > 0 && raw.errorCodes().includes(null),
    );
    assert.ok(raw.errorCodes().filter((c) => c === 4301).length >= 20, "most of a burst of 40 is over 10/s");
    assert.ok((await node.metric("switchyard_pusher_client_events_total", 'outcome="rate_limited"')) >= 20);
    assert.equal(raw.closed, null);
    await bystanderFine();
  });

  it("answers the HTTP API's bad requests as Pusher does: 401, 404, 413", async () => {
    const now = Math.floor(Date.now() / 1000);
    const body = JSON.stringify({ name: "e", channels: ["bystander"], data: "{}" });
    const path = `/apps/${APP_ID}/events`;
    assert.equal((await signedPost(node.port, path, body, now)).status, 200);
    assert.equal((await signedPost(node.port, path, body, now, "wrong-secret")).status, 401);
    assert.equal((await signedPost(node.port, path, body, now - 700)).status, 401, "a stale timestamp");
    const other = JSON.stringify({ name: "e", channels: ["private-x"], data: "{}" });
    assert.equal(
      (await signedPost(node.port, path, body, now, SECRET, other)).status,
      401,
      "a body changed after signing",
    );
    assert.equal((await signedPost(node.port, "/apps/9999/events", body, now)).status, 404);
    const huge = JSON.stringify({ name: "e", channels: ["bystander"], data: "x".repeat(200_000) });
    assert.equal((await signedPost(node.port, path, huge, now)).status, 413);
    const big = JSON.stringify({ name: "e", channels: ["bystander"], data: "x".repeat(20_000) });
    assert.equal((await signedPost(node.port, path, big, now)).status, 413, "one event over 10 KB");
    const wrongLib = new Pusher({
      appId: APP_ID,
      key: KEY,
      secret: "nope",
      host: "127.0.0.1",
      port: String(node.port),
    });
    await assert.rejects(wrongLib.trigger("bystander", "e", {}), (e: { status?: number }) => e.status === 401);
    assert.ok((await node.metric("switchyard_pusher_api_requests_total", 'endpoint="events",status="401"')) >= 3);
    await bystanderFine();
  });
});
