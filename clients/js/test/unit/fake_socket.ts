// A scripted WebSocket for unit tests: records what the client sends and
// lets the test play the server.

import type { WebSocketLike } from "../../src/socket.js";
import type { ServerFrame } from "../../src/frames.js";

export class FakeSocket implements WebSocketLike {
  static opened: FakeSocket[] = [];
  binaryType = "blob";
  readyState = 0;
  sent: Record<string, unknown>[] = [];
  closedWith?: number;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;

  constructor(
    readonly url: string,
    readonly protocol?: string | string[],
  ) {
    FakeSocket.opened.push(this);
  }

  static reset(): void {
    FakeSocket.opened = [];
  }

  static last(): FakeSocket {
    return FakeSocket.opened[FakeSocket.opened.length - 1];
  }

  send(data: string | Uint8Array): void {
    this.sent.push(JSON.parse(String(data)) as Record<string, unknown>);
  }

  close(code = 1000): void {
    this.closedWith = code;
    this.readyState = 3;
  }

  // ---- the server's side ----

  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }

  receive(frame: ServerFrame): void {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  /** The last frame sent that holds `key`. */
  lastSent(key: string): Record<string, unknown> | undefined {
    return [...this.sent].reverse().find((f) => key in f);
  }

  /** Answers the client's connect. */
  accept(extra: Record<string, unknown> = {}): void {
    const connect = this.lastSent("connect");
    this.receive({
      id: connect?.id as number,
      connect: { client: "c1", session: `s${FakeSocket.opened.length}`, ping_interval: 25, ...extra },
    });
  }

  /** The server closes with `code` (after a `disconnect` push, as switchyard does). */
  serverClose(code: number, reason = ""): void {
    this.receive({ disconnect: { code, reason, reconnect: false } });
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}
