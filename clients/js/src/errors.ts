// Errors the SDK raises: each carries the protocol's error or close code.

/** Codes of the SDK's own, outside the protocol's tables. */
export const ClientCodes = {
  /** A command's reply did not come within the client's `timeout`. */
  Timeout: 1,
  /** The client was closed by the application. */
  Closed: 2,
  /** The connection was lost before the reply came. */
  ConnectionLost: 3,
  /** The transport failed to open or broke (no close code). */
  Transport: 4,
} as const;

export type ErrorKind = "reply" | "close" | "timeout" | "closed" | "connection" | "transport";

export class SwitchyardError extends Error {
  /** The protocol's error code (100-112), close code (1000-4999), or one of [`ClientCodes`]. */
  readonly code: number;
  readonly kind: ErrorKind;

  constructor(kind: ErrorKind, code: number, message: string) {
    super(message);
    this.name = "SwitchyardError";
    this.kind = kind;
    this.code = code;
  }
}
