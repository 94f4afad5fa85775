// Real parts for the SDK's integration tests: `redis-server`, `switchyard`
// nodes and haproxy on 127.0.0.1 with free ports, each killed when the
// test ends (pass or fail), and HS256 tokens for the nodes' secret.

import { createHmac } from "node:crypto";
import { type Redis, SwitchyardNode } from "./processes.js";

export { DEADLINE, Haproxy, Redis, freePort, killAll, until } from "./processes.js";

export const SECRET = "sdk-test-secret-of-32-bytes-long";

export class Node extends SwitchyardNode {
  /** A `switchyard serve` on Redis, with `chat:` keeping history and the test secret. */
  static async start(redis: Redis, env: Record<string, string> = {}): Promise<Node> {
    const node = await SwitchyardNode.spawn([], {
      SWITCHYARD_REDIS_URL: redis.url,
      SWITCHYARD_AUTH_HMAC_SECRET: SECRET,
      SWITCHYARD_NAMESPACES__CHAT__HISTORY_SIZE: "10000",
      SWITCHYARD_NAMESPACES__CHAT__HISTORY_TTL: "10m",
      SWITCHYARD_NAMESPACES__TICKER__HISTORY_SIZE: "1000",
      SWITCHYARD_NAMESPACES__TICKER__HISTORY_TTL: "10m",
      SWITCHYARD_SHUTDOWN__DRAIN_PERIOD: "200ms",
      ...env,
    });
    return new Node(node.port, node.process);
  }
}

/** An HS256 connect token for `user`, expiring in `seconds`. */
export function token(user: string, seconds = 3600, claims: Record<string, unknown> = {}): string {
  const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub: user, exp: Math.floor(Date.now() / 1000) + seconds, ...claims })}`;
  return `${body}.${createHmac("sha256", SECRET).update(body).digest("base64url")}`;
}

/** Publishes `n` as a backend does, through the function library. */
export function fcall(redis: Redis, channel: string, n: number): void {
  const reply = redis.cli("FCALL", "switchyard_publish", "1", channel, String(n));
  if (reply === "" || reply.startsWith("ERR")) throw new Error(`FCALL answered ${reply}`);
}

/** Environment for nodes with `state:` (deltas, history) and `prices:` (history) namespaces. */
export const FEWER_BYTES_ENV: Record<string, string> = {
  SWITCHYARD_NAMESPACES__STATE__DELTA: "true",
  SWITCHYARD_NAMESPACES__STATE__HISTORY_SIZE: "100",
  SWITCHYARD_NAMESPACES__STATE__HISTORY_TTL: "10m",
  SWITCHYARD_NAMESPACES__PRICES__HISTORY_SIZE: "1000",
  SWITCHYARD_NAMESPACES__PRICES__HISTORY_TTL: "10m",
};

/** A document of about 2 KiB of which a small part changes with `n`, pretty-printed as a backend might send it. */
export function stateDocument(n: number): string {
  const book = Array.from({ length: 24 }, (_, i) => ({ id: i, name: `instrument ${i}`, bid: 100 + i, ask: 101 + i }));
  return JSON.stringify({ seq: n, book, status: `open ${n}` }, null, 1);
}
