// @switchyard/client: the SDK for switchyard real-time gateways.

export { Client } from "./client.js";
export type { ClientEvents, ClientOptions, ClientState } from "./client.js";
export type { WebSocketConstructor, WebSocketLike } from "./socket.js";
export { Subscription } from "./subscription.js";
export type { Gap, SubscribeOptions, SubscriptionEvents, SubscriptionState } from "./subscription.js";
export { ClientCodes, SwitchyardError } from "./errors.js";
export type { ErrorKind } from "./errors.js";
export { backoffDelay } from "./backoff.js";
export { reconnectAfter } from "./close_codes.js";
export type {
  ClientInfo,
  Filter,
  HistoryResult,
  PresenceResult,
  PresenceStatsResult,
  Publication,
  Receipt,
  StreamPosition,
} from "./frames.js";
