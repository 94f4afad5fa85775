// The protocol's frames in their JSON shape (docs/protocol.md), which is
// also what the SDK works with internally; the protobuf codec converts to
// and from it.

/** Who published, or who joined or left: a client, its user, the token's `info`. */
export interface ClientInfo {
  client: string;
  user: string;
  info?: unknown;
}

/** A place in a channel's history. */
export interface StreamPosition {
  epoch: string;
  offset: number;
}

/** A publication as delivered. */
export interface Publication {
  channel: string;
  /** The published JSON value, or the bytes when the payload is not JSON. */
  data: unknown;
  /** For channels whose namespace keeps history. */
  offset?: number;
  epoch?: string;
  info?: ClientInfo;
  /** The publisher's tags. */
  tags?: Record<string, string>;
  /** @internal On the wire only: `data` is a delta (the SDK applies it before handing it out). */
  delta?: boolean;
}

/**
 * A condition on a publication's tags, evaluated by the server: a leaf
 * (`key`, `cmp`, and `val` or `vals`) or a composite (`op` over `nodes`).
 */
export type Filter =
  | {
      key: string;
      cmp: "eq" | "neq" | "in" | "nin" | "ex" | "nex" | "sw" | "ew" | "ct" | "lt" | "lte" | "gt" | "gte";
      val?: string;
      vals?: string[];
    }
  | { op: "and" | "or" | "not"; nodes: Filter[] };

export interface ResumedChannel {
  channel: string;
  epoch: string;
  offset: number;
  recovered: boolean;
}

export interface ConnectResult {
  client: string;
  session: string;
  ping_interval: number;
  resumed?: boolean;
  channels?: ResumedChannel[];
  expires_in?: number;
}

export interface SubscribeResult {
  epoch?: string;
  offset?: number;
  recovered?: boolean;
  publications?: Publication[];
  /** Deltas were granted. */
  delta?: boolean;
}

export interface HistoryResult {
  publications: Publication[];
  epoch: string;
  offset: number;
}

export interface PresenceResult {
  clients: Record<string, ClientInfo>;
}

export interface PresenceStatsResult {
  num_clients: number;
  num_users: number;
}

/** Where a publication went (`publish` with `receipt`). */
export interface Receipt {
  /** Nodes that had subscribers of the channel. */
  nodes: number;
  /** Connections it was queued to on them. */
  clients: number;
  /** Nodes that got it but did not answer in time (left out of the counts). */
  unanswered: number;
}

export interface Disconnect {
  code: number;
  reason: string;
  reconnect: boolean;
}

export interface SubscribeRequest {
  channel: string;
  recover?: boolean;
  epoch?: string;
  offset?: number;
  token?: string;
  delta?: "fossil";
  filter?: Filter;
}

/** A frame from the client. */
export interface ClientFrame {
  id?: number;
  connect?: { token?: string; resume?: string; data?: unknown };
  subscribe?: SubscribeRequest;
  unsubscribe?: { channel: string };
  publish?: {
    channel: string;
    data: unknown;
    receipt?: boolean;
    idempotency_key?: string;
    tags?: Record<string, string>;
  };
  ack?: { channel: string; offset: number };
  pong?: Record<string, never>;
  history?: { channel: string; since?: StreamPosition; limit?: number };
  refresh?: { token: string };
  presence?: { channel: string };
  presence_stats?: { channel: string };
  rpc?: { method: string; data?: unknown };
}

/** A frame from the server: a reply (with the command's id) or a push. */
export interface ServerFrame {
  id?: number;
  connect?: ConnectResult;
  subscribe?: SubscribeResult;
  unsubscribe?: Record<string, never>;
  publish?: { epoch?: string; offset?: number; receipt?: Receipt };
  error?: { code: number; message: string };
  pub?: Publication;
  ping?: Record<string, never>;
  disconnect?: Disconnect;
  history?: HistoryResult;
  refresh?: { expires_in: number };
  presence?: PresenceResult;
  presence_stats?: PresenceStatsResult;
  join?: { channel: string; info: ClientInfo };
  leave?: { channel: string; info: ClientInfo };
  sub?: { channel: string; epoch?: string; offset?: number };
  unsub?: { channel: string };
  rpc?: { data?: unknown };
}

/** Turns frames into WebSocket messages and back. */
export interface Codec {
  /** The `Sec-WebSocket-Protocol` it speaks. */
  readonly subprotocol: string;
  encode(frame: ClientFrame): string | Uint8Array;
  decode(message: string | ArrayBuffer | Uint8Array): ServerFrame;
}
