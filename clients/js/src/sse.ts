// The fallback transport: Server-Sent Events down, `POST /sse/command` up,
// behind the same small interface as a WebSocket, so the client runs the
// same protocol over it. JSON only; browsers only (it needs EventSource).

import type { WebSocketLike } from "./socket.js";

const CLOSED = 3;

/** `ws://host/ws` → `http://host`, `wss://` → `https://`. */
function httpBase(url: string): string {
  const parsed = new URL(url);
  parsed.protocol = parsed.protocol === "wss:" ? "https:" : "http:";
  return `${parsed.protocol}//${parsed.host}`;
}

export class SseSocket implements WebSocketLike {
  binaryType = "arraybuffer";
  readyState = 0;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  #base: string;
  #stream?: EventSource;
  #connectId?: number;
  /** The stream's session token, from its first frame: the key of its commands. */
  #session?: string;
  /** Commands waiting for the session, or for the request before them. */
  #queue: string[] = [];
  #posting = false;

  constructor(url: string) {
    this.#base = httpBase(url);
    // Like a WebSocket, it is "open" at once: the client's `connect` opens the stream.
    queueMicrotask(() => {
      if (this.readyState !== 0) return;
      this.readyState = 1;
      this.onopen?.({});
    });
  }

  send(data: string | Uint8Array): void {
    if (typeof data !== "string") throw new TypeError("the SSE transport carries JSON only");
    const frame = JSON.parse(data) as { id?: number; connect?: { token?: string; resume?: string }; pong?: object };
    if (frame.connect) {
      this.#open(frame.id, frame.connect);
      return;
    }
    // The server needs no pongs from a stream: it sees a dead one on write.
    if (frame.pong) return;
    this.#queue.push(data);
    void this.#flush();
  }

  close(): void {
    this.readyState = CLOSED;
    this.#stream?.close();
  }

  #open(id: number | undefined, connect: { token?: string; resume?: string }): void {
    const query = new URLSearchParams();
    if (connect.token) query.set("token", connect.token);
    if (connect.resume) query.set("resume", connect.resume);
    this.#connectId = id;
    const stream = new EventSource(`${this.#base}/sse?${query}`);
    this.#stream = stream;
    stream.onmessage = (event: MessageEvent<string>) => {
      let data = event.data;
      if (this.#session === undefined && data.startsWith('{"connect"')) {
        // The stream's first frame is the connect reply, without an id.
        const reply = JSON.parse(data) as { id?: number; connect: { session: string } };
        this.#session = reply.connect.session;
        reply.id = this.#connectId;
        data = JSON.stringify(reply);
        queueMicrotask(() => void this.#flush());
      }
      this.onmessage?.({ data });
    };
    stream.onerror = () => this.#end(1006, "the stream ended");
  }

  /** Sends the queued commands, one request at a time so they run in order. */
  async #flush(): Promise<void> {
    if (this.#posting || this.#session === undefined || this.#queue.length === 0) return;
    this.#posting = true;
    const commands = this.#queue.splice(0);
    try {
      const body = `{"session":${JSON.stringify(this.#session)},"commands":[${commands.join(",")}]}`;
      // text/plain keeps it a simple request: no CORS preflight.
      const response = await fetch(`${this.#base}/sse/command`, {
        method: "POST",
        headers: { "content-type": "text/plain" },
        body,
        credentials: "include",
      });
      if (!response.ok) {
        // 410: the stream (or its node) is gone; anything else: try anew.
        this.#end(1006, `commands refused with HTTP ${response.status}`);
        return;
      }
    } catch {
      this.#end(1006, "commands could not be sent");
      return;
    } finally {
      this.#posting = false;
    }
    void this.#flush();
  }

  #end(code: number, reason: string): void {
    if (this.readyState === CLOSED) return;
    this.readyState = CLOSED;
    this.#stream?.close();
    this.onclose?.({ code, reason });
  }
}
