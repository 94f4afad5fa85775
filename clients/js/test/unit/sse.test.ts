// The fallback to Server-Sent Events: when a WebSocket cannot open before
// any ever did, the client opens an EventSource and sends its commands by
// POST, the same protocol otherwise.

import assert from "node:assert/strict";
import { afterEach, describe, it, mock } from "node:test";
import { Client } from "../../src/client.js";
import { FakeSocket } from "./fake_socket.js";

class FakeEventSource {
  static opened: FakeEventSource[] = [];
  onmessage: ((event: { data: string }) => void) | null = null;
  onerror: (() => void) | null = null;
  closed = false;
  constructor(readonly url: string) {
    FakeEventSource.opened.push(this);
  }
  close(): void {
    this.closed = true;
  }
}

const settle = () => new Promise<void>((resolve) => setImmediate(resolve));
const posts: { url: string; body: string }[] = [];
const g = globalThis as Record<string, unknown>;

afterEach(() => {
  delete g.EventSource;
  mock.restoreAll();
  mock.timers.reset();
});

describe("the SSE fallback", () => {
  it("takes over when the WebSocket cannot open, and carries commands by POST", async () => {
    FakeSocket.reset();
    FakeEventSource.opened = [];
    mock.timers.enable({ apis: ["setTimeout"] });
    g.EventSource = FakeEventSource;
    mock.method(globalThis, "fetch", async (url: string, init: { body: string }) => {
      posts.push({ url, body: init.body });
      return { ok: true, status: 200 } as Response;
    });
    const client = new Client("ws://gw.example:8080/ws", { WebSocket: FakeSocket, token: "t0k" });
    const connected = client.connect();
    await settle();
    // The WebSocket fails before it opens.
    FakeSocket.last().onclose?.({ code: 1006, reason: "" });
    mock.timers.tick(0);
    await settle();
    const stream = FakeEventSource.opened.at(-1);
    assert.ok(stream, "an EventSource was opened");
    assert.equal(stream.url, "http://gw.example:8080/sse?token=t0k");
    stream.onmessage?.({ data: JSON.stringify({ connect: { client: "c", session: "n1.abc", ping_interval: 25 } }) });
    await connected;
    assert.equal(client.state, "connected");
    const publish = client.publish("news", { hi: 1 });
    await settle();
    await settle();
    assert.equal(posts.at(-1)?.url, "http://gw.example:8080/sse/command");
    const body = JSON.parse(posts.at(-1)?.body ?? "{}") as { session: string; commands: { id: number }[] };
    assert.equal(body.session, "n1.abc");
    // The reply comes down the stream, as on a WebSocket.
    stream.onmessage?.({ data: JSON.stringify({ id: body.commands[0].id, publish: {} }) });
    assert.deepEqual(await publish, {});
    client.close();
    assert.ok(stream.closed);
  });
});
