// Real parts for the Pusher interop tests: `redis-server`, `switchyard`
// nodes with a Pusher app, haproxy in front of them, and a small backend
// that receives webhooks; each killed when the test ends (pass or fail).
// The clients are Pusher's own libraries, unchanged.

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer, type IncomingMessage, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Pusher from "pusher";
import PusherJs from "pusher-js";
import type { Options } from "pusher-js";
import { type Redis, SwitchyardNode, freePort, until } from "../../../clients/js/test/processes.js";

export { DEADLINE, Haproxy, Redis, freePort, killAll, until } from "../../../clients/js/test/processes.js";

export const APP_ID = "1001";
export const KEY = "app-key";
export const SECRET = "app-secret";

/** What a node's configuration adds to the app (TOML lines of `[[pusher.apps]]`) and to the file. */
export interface NodeOptions {
  app?: string[];
  extra?: string[];
}

export class Node extends SwitchyardNode {
  /** A `switchyard serve` on Redis with the test app, its client events on. */
  static async start(redis: Redis, options: NodeOptions = {}): Promise<Node> {
    const dir = mkdtempSync(join(tmpdir(), "switchyard-pusher-"));
    const config = [
      `broker.redis_url = "${redis.url}"`,
      `shutdown.drain_period = "200ms"`,
      ...(options.extra ?? []),
      "[[pusher.apps]]",
      `id = "${APP_ID}"`,
      `key = "${KEY}"`,
      `secret = "${SECRET}"`,
      "enable_client_messages = true",
      ...(options.app ?? []),
      "",
    ].join("\n");
    writeFileSync(join(dir, "node.toml"), config);
    try {
      const node = await SwitchyardNode.spawn(["--config", join(dir, "node.toml")], {});
      return new Node(node.port, node.process);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

/** The official server library, talking to the cluster at `port` (a node or the balancer). */
export function server(port: number): Pusher {
  return new Pusher({ appId: APP_ID, key: KEY, secret: SECRET, host: "127.0.0.1", port: String(port), useTLS: false });
}

/** Who a client is on presence channels and when it signs in. */
export interface Identity {
  id: string;
  name?: string;
}

/**
 * pusher-js (its Node build) connected to `port`, authorized by the server
 * library itself, as an application's auth endpoint would.
 */
export function client(
  port: number,
  identity: Identity = { id: "anonymous" },
  options: Partial<Options> = {},
): PusherJs {
  const signer = server(port);
  return new PusherJs(KEY, {
    wsHost: "127.0.0.1",
    wsPort: port,
    forceTLS: false,
    enabledTransports: ["ws"],
    cluster: "local",
    channelAuthorization: {
      endpoint: "",
      transport: "ajax",
      customHandler: ({ socketId, channelName }, callback) => {
        const data = channelName.startsWith("presence-")
          ? { user_id: identity.id, user_info: { name: identity.name ?? identity.id } }
          : undefined;
        callback(null, signer.authorizeChannel(socketId, channelName, data));
      },
    },
    userAuthentication: {
      endpoint: "",
      transport: "ajax",
      customHandler: ({ socketId }, callback) => {
        callback(null, signer.authenticateUser(socketId, { id: identity.id, name: identity.name ?? identity.id }));
      },
    },
    ...options,
  });
}

/** Resolves once `pusher` is connected. */
export async function connected(pusher: PusherJs): Promise<void> {
  await until("pusher-js to connect", () => pusher.connection.state === "connected");
}

/** One webhook request as the backend received it. */
export interface Received {
  headers: IncomingMessage["headers"];
  body: string;
  valid: boolean;
  events: { name: string; channel: string; id: string; user_id?: string; event?: string; data?: string }[];
}

/**
 * A backend receiving webhooks: each request checked with the server
 * library's own `webhook(...).isValid()`; the first `failFirst` requests
 * are answered 500 (their events must come again).
 */
export class WebhookReceiver {
  readonly received: Received[] = [];
  failed = 0;

  private constructor(
    private readonly http: Server,
    readonly port: number,
    private failFirst: number,
  ) {}

  static async start(failFirst = 0): Promise<WebhookReceiver> {
    const port = await freePort();
    const lib = server(port);
    const http = createHttpServer();
    const receiver = new WebhookReceiver(http, port, failFirst);
    http.on("request", (req, res) => {
      let body = "";
      req.setEncoding("utf8");
      req.on("data", (chunk: string) => (body += chunk));
      req.on("end", () => {
        if (receiver.failFirst > 0) {
          receiver.failFirst -= 1;
          receiver.failed += 1;
          res.writeHead(500).end();
          return;
        }
        const webhook = lib.webhook({ headers: req.headers as Record<string, string>, rawBody: body });
        const valid = webhook.isValid();
        receiver.received.push({
          headers: req.headers,
          body,
          valid,
          events: valid ? (webhook.getEvents() as unknown as Received["events"]) : [],
        });
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((done) => http.listen(port, "127.0.0.1", done));
    return receiver;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/pusher/webhooks`;
  }

  /** Every event received (valid requests only), each id once (delivery is at least once). */
  events(): Received["events"] {
    const seen = new Set<string>();
    return this.received
      .flatMap((r) => r.events)
      .filter((e) => {
        if (seen.has(e.id)) return false;
        seen.add(e.id);
        return true;
      });
  }

  close(): void {
    this.http.close();
  }
}
