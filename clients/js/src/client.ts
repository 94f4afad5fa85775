// The client: one connection at a time to a switchyard node, kept up by
// itself. It reconnects by the close-code table with backoff and jitter,
// resumes its session (or recovers each subscription) on the next node,
// acknowledges what it delivered, answers pings, refreshes its token, and
// notices a dead server.

import { backoffDelay } from "./backoff.js";
import { reconnectAfter } from "./close_codes.js";
import { Emitter } from "./emitter.js";
import { ClientCodes, SwitchyardError } from "./errors.js";
import type {
  ClientFrame,
  ClientInfo,
  Codec,
  ConnectResult,
  HistoryResult,
  PresenceResult,
  PresenceStatsResult,
  Publication,
  Receipt,
  ServerFrame,
  StreamPosition,
} from "./frames.js";
import { jsonCodec } from "./json.js";
import { SseSocket } from "./sse.js";
import type { WebSocketConstructor, WebSocketLike } from "./socket.js";
import { Subscription, type SubscribeOptions, type SubscriptionHost } from "./subscription.js";

export type ClientState = "disconnected" | "connecting" | "connected";

export interface ClientOptions {
  /** A connect token (JWT). */
  token?: string;
  /** Called for a fresh token at every connect, before it expires, and after a 101. */
  getToken?: () => Promise<string>;
  /** Default `"json"`. */
  encoding?: "json" | "protobuf";
  /** A WebSocket implementation where there is no global one (Node 20: the `ws` package). */
  WebSocket?: WebSocketConstructor;
  /** Every command's reply must come within this, ms. Default 10000. */
  timeout?: number;
  /** Backoff bounds between reconnect attempts, ms. Defaults 500 and 20000. */
  minReconnectDelay?: number;
  maxReconnectDelay?: number;
  /** Acknowledgements are sent at most this often, ms. Default 1000. */
  ackInterval?: number;
  /** A token is refreshed this long before it expires, at most (and at a third of its life at least), s. Default 30. */
  refreshBefore?: number;
  /**
   * Transports in order of preference. Default `["websocket", "sse"]`: Server-Sent
   * Events (JSON, browsers) when a WebSocket cannot open.
   */
  transports?: ("websocket" | "sse")[];
  /**
   * Sent with every connect: a server with a connect proxy passes it to the
   * application's backend (which names the user from the request's cookies).
   */
  data?: unknown;
}

export interface ClientEvents {
  state: ClientState;
  error: SwitchyardError;
  connected: { client: string; resumed: boolean };
  disconnected: { code: number; reason: string; reconnect: boolean };
  /** Publications of channels the server subscribed this client to (`subs`, user operations). */
  publication: Publication;
  /** The server subscribed this client to a channel. */
  subscribed: { channel: string; epoch?: string; offset?: number };
  /** The server unsubscribed this client from a channel. */
  unsubscribed: { channel: string };
  join: { channel: string; info: ClientInfo };
  leave: { channel: string; info: ClientInfo };
}

interface Pending {
  resolve: (frame: ServerFrame) => void;
  reject: (error: SwitchyardError) => void;
  timer: ReturnType<typeof setTimeout>;
}

const OPEN = 1;

export class Client extends Emitter<ClientEvents> {
  #urls: string[];
  #options: Required<Omit<ClientOptions, "token" | "getToken" | "WebSocket" | "encoding" | "transports" | "data">> &
    ClientOptions;
  #codec: Codec = jsonCodec;
  #codecReady?: Promise<void>;
  /** This connection's codec: the SSE transport speaks JSON whatever the encoding. */
  #wire: Codec = jsonCodec;
  /** A WebSocket could not open before any ever did: use the fallback from now on. */
  #fallback = false;
  /** A WebSocket opened once: the network allows them, a failure is the server's. */
  #websocketWorked = false;
  #state: ClientState = "disconnected";
  #ws?: WebSocketLike;
  #nextId = 1;
  #pending = new Map<number, Pending>();
  #subscriptions = new Map<string, Subscription>();
  /** The session's resume token, from the last connect reply. */
  #session?: string;
  #clientId?: string;
  #attempt = 0;
  #urlIndex = 0;
  /** The application asked for a connection (and has not closed). */
  #wanted = false;
  #reconnectTimer?: ReturnType<typeof setTimeout>;
  #deadTimer?: ReturnType<typeof setTimeout>;
  #refreshTimer?: ReturnType<typeof setTimeout>;
  #ackTimer?: ReturnType<typeof setTimeout>;
  #pingInterval = 25;
  #waiting: { resolve: () => void; reject: (e: SwitchyardError) => void }[] = [];
  #onOnline = (): void => this.#online();
  #onOffline = (): void => this.#offline();
  #host: SubscriptionHost = {
    history: (channel, since, limit) => this.history(channel, { since, limit }),
    release: (subscription) => this.#release(subscription),
    acknowledge: () => this.#scheduleAck(),
    resubscribe: (subscription) => this.#resubscribe(subscription),
  };

  /** `url`: a node's WebSocket URL, or several to go round on reconnects. */
  constructor(url: string | string[], options: ClientOptions = {}) {
    super();
    this.#urls = Array.isArray(url) ? [...url] : [url];
    if (this.#urls.length === 0) throw new TypeError("at least one URL");
    this.#options = {
      timeout: 10000,
      minReconnectDelay: 500,
      maxReconnectDelay: 20000,
      ackInterval: 1000,
      refreshBefore: 30,
      ...options,
    };
    if (options.encoding === "protobuf") {
      this.#codecReady = import("./protobuf.js").then((m) => {
        this.#codec = m.protobufCodec;
      });
    }
  }

  get state(): ClientState {
    return this.#state;
  }

  /** This connection's id, unique across the cluster, once connected. */
  get clientId(): string | undefined {
    return this.#clientId;
  }

  /** Connects (and keeps connecting); resolves once connected. */
  connect(): Promise<void> {
    if (!this.#wanted) {
      this.#wanted = true;
      this.#listenNetwork(true);
      if (this.#state === "disconnected") void this.#open();
    }
    return this.#whenConnected();
  }

  /** Closes the connection for good: no reconnect, no timer left, pending commands rejected. */
  close(): void {
    this.#wanted = false;
    this.#listenNetwork(false);
    clearTimeout(this.#reconnectTimer);
    this.#stopTimers();
    const ws = this.#ws;
    this.#ws = undefined;
    if (ws) {
      ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
      try {
        ws.close(1000);
      } catch {
        // already closed
      }
    }
    const closed = new SwitchyardError("closed", ClientCodes.Closed, "the client was closed");
    this.#failPending(closed);
    for (const waiter of this.#waiting.splice(0)) waiter.reject(closed);
    for (const subscription of this.#subscriptions.values()) subscription.interrupted();
    this.#setState("disconnected");
  }

  /** Subscribes to `channel`; the subscription keeps itself up across reconnects. */
  subscribe(channel: string, options: SubscribeOptions = {}): Subscription {
    const existing = this.#subscriptions.get(channel);
    if (existing) return existing;
    const subscription = new Subscription(channel, options, this.#host);
    this.#subscriptions.set(channel, subscription);
    if (this.#state === "connected") this.#sendSubscribe(subscription);
    return subscription;
  }

  /** The subscription to `channel`, if there is one. */
  getSubscription(channel: string): Subscription | undefined {
    return this.#subscriptions.get(channel);
  }

  /**
   * Publishes `data` (a JSON value; bytes with the protobuf encoding). With
   * `receipt`, the answer says how many nodes and connections it reached;
   * with `idempotencyKey`, a repeat within the server's window publishes
   * nothing and answers the first result (safe to retry after a timeout).
   */
  async publish(
    channel: string,
    data: unknown,
    options: { receipt?: boolean; idempotencyKey?: string; tags?: Record<string, string> } = {},
  ): Promise<{ epoch?: string; offset?: number; receipt?: Receipt }> {
    const publish: ClientFrame["publish"] = { channel, data };
    if (options.receipt && publish) publish.receipt = true;
    if (options.idempotencyKey && publish) publish.idempotency_key = options.idempotencyKey;
    if (options.tags && publish) publish.tags = options.tags;
    const reply = await this.#command({ publish });
    return reply.publish ?? {};
  }

  /** Publications of a channel with history: after `since`, or the newest `limit`. */
  async history(channel: string, options: { since?: StreamPosition; limit?: number } = {}): Promise<HistoryResult> {
    const reply = await this.#command({ history: { channel, ...options } });
    const history = reply.history;
    return { publications: history?.publications ?? [], epoch: history?.epoch ?? "", offset: history?.offset ?? 0 };
  }

  /** Who is subscribed to `channel`, on every node. */
  async presence(channel: string): Promise<PresenceResult> {
    return (await this.#command({ presence: { channel } })).presence ?? { clients: {} };
  }

  async presenceStats(channel: string): Promise<PresenceStatsResult> {
    return (await this.#command({ presence_stats: { channel } })).presence_stats ?? { num_clients: 0, num_users: 0 };
  }

  /**
   * Calls `method` of the application's backend through the server (its RPC
   * proxy); resolves with the backend's data, rejects with its error (`code`
   * as the backend gave it, 108 when the backend did not answer).
   */
  async rpc(method: string, data: unknown = null): Promise<unknown> {
    return (await this.#command({ rpc: { method, data } })).rpc?.data ?? null;
  }

  // ---- connection ----

  async #open(): Promise<void> {
    if (!this.#wanted) return;
    this.#setState("connecting");
    const url = this.#urls[this.#urlIndex++ % this.#urls.length];
    let token = this.#options.token;
    try {
      await this.#codecReady;
      if (this.#options.getToken) token = await this.#options.getToken();
    } catch (e) {
      this.emit("error", new SwitchyardError("transport", ClientCodes.Transport, `getToken failed: ${String(e)}`));
      this.#retry("backoff");
      return;
    }
    if (!this.#wanted) return;
    const transports = this.#options.transports ?? ["websocket", "sse"];
    const global = globalThis as { WebSocket?: WebSocketConstructor; EventSource?: unknown };
    const Ws = this.#options.WebSocket ?? global.WebSocket;
    const canSse = transports.includes("sse") && typeof global.EventSource === "function";
    const useSse = canSse && (this.#fallback || !transports.includes("websocket") || !Ws);
    if (!useSse && !Ws) throw new TypeError("no WebSocket: pass one in the options (e.g. the `ws` package)");
    this.#wire = useSse ? jsonCodec : this.#codec;
    let ws: WebSocketLike;
    let opened = false;
    try {
      ws = useSse || !Ws ? new SseSocket(url) : new Ws(url, this.#codec.subprotocol);
    } catch (e) {
      this.emit("error", new SwitchyardError("transport", ClientCodes.Transport, `cannot open ${url}: ${String(e)}`));
      this.#retry("backoff");
      return;
    }
    ws.binaryType = "arraybuffer";
    this.#ws = ws;
    let disconnect: { code: number; reason: string; reconnect: boolean } | undefined;
    ws.onopen = () => {
      opened = true;
      if (!useSse) this.#websocketWorked = true;
      const connect: ClientFrame["connect"] = {};
      if (token) connect.token = token;
      if (this.#session) connect.resume = this.#session;
      if (this.#options.data !== undefined) connect.data = this.#options.data;
      this.#request({ connect }).then(
        (reply) => this.#connected(reply.connect),
        (error: SwitchyardError) => {
          if (error.kind === "reply") this.emit("error", error);
        },
      );
    };
    ws.onmessage = (event) => {
      let frame: ServerFrame;
      try {
        frame = this.#wire.decode(event.data as string | ArrayBuffer);
      } catch (e) {
        this.emit("error", new SwitchyardError("transport", ClientCodes.Transport, `unreadable frame: ${String(e)}`));
        return;
      }
      this.#alive();
      if (frame.disconnect) disconnect = frame.disconnect;
      this.#dispatch(frame);
    };
    ws.onerror = () => {
      // The close event follows with the details.
    };
    ws.onclose = (event) => {
      if (this.#ws !== ws) return;
      this.#ws = undefined;
      if (!opened && !useSse && canSse && !this.#websocketWorked) {
        // The WebSocket could not even open (a proxy, a firewall): fall back.
        this.#fallback = true;
        this.#setState("connecting");
        clearTimeout(this.#reconnectTimer);
        this.#reconnectTimer = setTimeout(() => void this.#open(), 0);
        return;
      }
      const code = disconnect?.code ?? event.code ?? 1006;
      const reason = disconnect?.reason ?? event.reason ?? "";
      this.#lost(code, reason);
    };
  }

  #connected(result: ConnectResult | undefined): void {
    if (!result) return;
    this.#attempt = 0;
    this.#session = result.session;
    this.#clientId = result.client;
    this.#pingInterval = result.ping_interval || 25;
    this.#alive();
    this.#scheduleRefresh(result.expires_in);
    const resumed = new Map((result.resumed ? (result.channels ?? []) : []).map((c) => [c.channel, c]));
    this.#setState("connected");
    for (const subscription of this.#subscriptions.values()) {
      const channel = resumed.get(subscription.channel);
      if (channel) subscription.subscribed(channel);
      else if (subscription.state !== "subscribed") this.#sendSubscribe(subscription);
    }
    this.emit("connected", { client: result.client, resumed: result.resumed === true });
    for (const waiter of this.#waiting.splice(0)) waiter.resolve();
  }

  /** The connection ended with `code`: reconnect or stop, as the table says. */
  #lost(code: number, reason: string): void {
    this.#stopTimers();
    this.#failPending(new SwitchyardError("connection", ClientCodes.ConnectionLost, `connection closed (${code})`));
    for (const subscription of this.#subscriptions.values()) subscription.interrupted();
    const when = this.#wanted ? reconnectAfter(code) : "never";
    this.emit("disconnected", { code, reason, reconnect: when !== "never" });
    if (when === "never") {
      this.#wanted = false;
      this.#listenNetwork(false);
      const error = new SwitchyardError("close", code, reason || `closed with ${code}`);
      this.emit("error", error);
      for (const waiter of this.#waiting.splice(0)) waiter.reject(error);
      this.#setState("disconnected");
      return;
    }
    this.#retry(when);
  }

  #retry(when: "at once" | "backoff"): void {
    if (!this.#wanted) return;
    this.#setState("connecting");
    const delay =
      when === "at once"
        ? 0
        : backoffDelay(this.#attempt++, { min: this.#options.minReconnectDelay, max: this.#options.maxReconnectDelay });
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = setTimeout(() => void this.#open(), delay);
  }

  /** Drops the connection as dead (no ping for two intervals) or offline. */
  #drop(code: number, reason: string): void {
    const ws = this.#ws;
    if (!ws) return;
    this.#ws = undefined;
    ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
    try {
      ws.close(code >= 4000 ? code : 4000, reason);
    } catch {
      // already closed
    }
    this.#lost(code, reason);
  }

  /** Something came from the server: it is alive for two more ping intervals. */
  #alive(): void {
    clearTimeout(this.#deadTimer);
    this.#deadTimer = setTimeout(
      () => this.#drop(4011, "no ping from the server"),
      2 * this.#pingInterval * 1000 + 1000,
    );
  }

  #scheduleRefresh(expiresIn: number | undefined): void {
    clearTimeout(this.#refreshTimer);
    if (!expiresIn || !this.#options.getToken) return;
    const before = Math.min(this.#options.refreshBefore, expiresIn / 3);
    this.#refreshTimer = setTimeout(() => void this.#refresh(), Math.max(0, expiresIn - before) * 1000);
  }

  async #refresh(): Promise<void> {
    try {
      const getToken = this.#options.getToken;
      if (!getToken) return;
      const token = await getToken();
      const reply = await this.#command({ refresh: { token } });
      this.#scheduleRefresh(reply.refresh?.expires_in);
    } catch (e) {
      if (this.#state !== "connected") return; // the next connect takes a fresh token
      this.emit("error", e instanceof SwitchyardError ? e : new SwitchyardError("transport", 0, String(e)));
      clearTimeout(this.#refreshTimer);
      this.#refreshTimer = setTimeout(() => void this.#refresh(), this.#options.minReconnectDelay);
    }
  }

  #stopTimers(): void {
    clearTimeout(this.#deadTimer);
    clearTimeout(this.#refreshTimer);
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
  }

  // ---- browsers' network state ----

  #listenNetwork(on: boolean): void {
    const target = globalThis as { addEventListener?: unknown; removeEventListener?: unknown };
    if (typeof target.addEventListener !== "function" || typeof target.removeEventListener !== "function") return;
    const method = on ? "addEventListener" : "removeEventListener";
    (globalThis as unknown as EventTarget)[method]("online", this.#onOnline);
    (globalThis as unknown as EventTarget)[method]("offline", this.#onOffline);
  }

  #online(): void {
    if (this.#wanted && this.#state === "connecting" && !this.#ws) {
      clearTimeout(this.#reconnectTimer);
      void this.#open();
    }
  }

  #offline(): void {
    if (this.#ws) this.#drop(1006, "offline");
  }

  // ---- frames ----

  #dispatch(frame: ServerFrame): void {
    if (frame.id) {
      const pending = this.#pending.get(frame.id);
      if (!pending) return;
      this.#pending.delete(frame.id);
      clearTimeout(pending.timer);
      if (frame.error) pending.reject(new SwitchyardError("reply", frame.error.code, frame.error.message));
      else pending.resolve(frame);
      return;
    }
    if (frame.pub) {
      const subscription = this.#subscriptions.get(frame.pub.channel);
      if (subscription) subscription.deliver(frame.pub);
      else this.emit("publication", frame.pub);
    } else if (frame.ping) {
      this.#send({ pong: {} });
    } else if (frame.join) {
      this.#subscriptions.get(frame.join.channel)?.member(true, frame.join.info);
      this.emit("join", frame.join);
    } else if (frame.leave) {
      this.#subscriptions.get(frame.leave.channel)?.member(false, frame.leave.info);
      this.emit("leave", frame.leave);
    } else if (frame.sub) {
      this.emit("subscribed", frame.sub);
    } else if (frame.unsub) {
      this.emit("unsubscribed", frame.unsub);
    }
  }

  #sendSubscribe(subscription: Subscription): void {
    this.#request({ subscribe: subscription.request() }).then(
      (reply) => {
        if (this.#subscriptions.get(subscription.channel) === subscription)
          subscription.subscribed(reply.subscribe ?? {});
      },
      (error: SwitchyardError) => {
        if (error.kind === "reply") subscription.refused(error);
        // Otherwise the connection went: it is subscribed again on the next.
      },
    );
  }

  /** Unsubscribes and subscribes again (recovering from its position) on this connection. */
  #resubscribe(subscription: Subscription): void {
    if (this.#state !== "connected") return; // the next connection subscribes it anyway
    subscription.interrupted();
    this.#request({ unsubscribe: { channel: subscription.channel } }).then(
      () => this.#sendSubscribe(subscription),
      () => {
        // Gone with the connection: subscribed again on the next.
      },
    );
  }

  #release(subscription: Subscription): void {
    if (this.#subscriptions.get(subscription.channel) !== subscription) return;
    this.#subscriptions.delete(subscription.channel);
    if (this.#state === "connected") {
      this.#request({ unsubscribe: { channel: subscription.channel } }).catch(() => {
        // Gone with the connection: the server forgets it too.
      });
    }
  }

  #scheduleAck(): void {
    if (this.#ackTimer || this.#state !== "connected") return;
    this.#ackTimer = setTimeout(() => {
      this.#ackTimer = undefined;
      for (const subscription of this.#subscriptions.values()) {
        const offset = subscription.unacked();
        if (offset !== undefined && this.#send({ ack: { channel: subscription.channel, offset } })) {
          subscription.acknowledged(offset);
        }
      }
    }, this.#options.ackInterval);
  }

  /** A command once connected (waiting for the connection within the timeout). */
  async #command(frame: ClientFrame): Promise<ServerFrame> {
    if (this.#state !== "connected") {
      if (!this.#wanted) throw new SwitchyardError("closed", ClientCodes.Closed, "not connected: call connect()");
      await this.#whenConnected(this.#options.timeout);
    }
    return this.#request(frame);
  }

  /** Sends a command on the current connection and waits for its reply. */
  #request(frame: ClientFrame): Promise<ServerFrame> {
    return new Promise((resolve, reject) => {
      const id = this.#nextId++;
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new SwitchyardError("timeout", ClientCodes.Timeout, `no reply within ${this.#options.timeout} ms`));
      }, this.#options.timeout);
      this.#pending.set(id, { resolve, reject, timer });
      let sent = false;
      try {
        sent = this.#send({ ...frame, id });
      } catch (e) {
        this.#pending.delete(id);
        clearTimeout(timer);
        reject(e instanceof SwitchyardError ? e : new SwitchyardError("transport", ClientCodes.Transport, String(e)));
        return;
      }
      if (!sent) {
        this.#pending.delete(id);
        clearTimeout(timer);
        reject(new SwitchyardError("connection", ClientCodes.ConnectionLost, "not connected"));
      }
    });
  }

  #send(frame: ClientFrame): boolean {
    const ws = this.#ws;
    if (!ws || ws.readyState !== OPEN) return false;
    ws.send(this.#wire.encode(frame));
    return true;
  }

  #whenConnected(timeout?: number): Promise<void> {
    if (this.#state === "connected") return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject };
      this.#waiting.push(waiter);
      if (timeout === undefined) return;
      const timer = setTimeout(() => {
        const at = this.#waiting.indexOf(waiter);
        if (at >= 0) this.#waiting.splice(at, 1);
        reject(new SwitchyardError("timeout", ClientCodes.Timeout, `not connected within ${timeout} ms`));
      }, timeout);
      waiter.resolve = () => {
        clearTimeout(timer);
        resolve();
      };
      waiter.reject = (e) => {
        clearTimeout(timer);
        reject(e);
      };
    });
  }

  #failPending(error: SwitchyardError): void {
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
    this.#pending.clear();
  }

  #setState(state: ClientState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.emit("state", state);
  }
}
