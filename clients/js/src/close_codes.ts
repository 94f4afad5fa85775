// What a close means for the client: the protocol's close-code table.

export type Reconnect = "at once" | "backoff" | "never";

/** Whether and when to reconnect after a close with `code`. */
export function reconnectAfter(code: number): Reconnect {
  switch (code) {
    case 1001: // going away: the node drains or stops
    case 4012: // rebalance: this node holds more than its share
      return "at once";
    case 1000: // the server closed normally
    case 1002: // protocol violation
    case 1007: // invalid payload
    case 1009: // message too big
    case 4001: // malformed message
    case 4003: // unauthorized or forbidden
      return "never";
    default:
      // 1006 (dropped), 1011, 4008, 4009, 4011, 4029, and anything else.
      return "backoff";
  }
}
