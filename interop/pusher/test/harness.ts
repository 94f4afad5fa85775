// Real parts for the Pusher interop tests: `redis-server`, `switchyard`
// nodes with a Pusher app, haproxy in front of them, and a small backend
// that receives webhooks; each killed when the test ends (pass or fail).
// The clients are Pusher's own libraries, unchanged.

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer, type IncomingMessage, type Server } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import Pusher from "pusher";
import PusherJs from "pusher-js";
import type { Options } from "pusher-js";

export const APP_ID = "1001";
export const KEY = "app-key";
export const SECRET = "app-secret";
/** How long a test waits for an event before it fails: generous, not a measurement. */
export const DEADLINE = 30_000;

const repo = resolve(import.meta.dirname, "../../../..");
const binary = process.env.SWITCHYARD_BIN ?? join(repo, "target/debug/switchyard");
const children = new Set<ChildProcess>();

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.on("exit", () => children.delete(child));
  return child;
}

/** Kills everything this file started (call from `after`). */
export function killAll(): void {
  for (const child of children) child.kill("SIGKILL");
}
process.on("exit", killAll);

export async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.on("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => done(typeof address === "object" && address ? address.port : 0));
    });
  });
}

/** Waits until `check` holds, polling; fails after DEADLINE with `what`. */
export async function until(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  const end = performance.now() + DEADLINE;
  while (!(await check())) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export class Redis {
  constructor(readonly port: number) {}

  static async start(): Promise<Redis> {
    const port = await freePort();
    track(
      spawn("redis-server", ["--bind", "127.0.0.1", "--port", String(port), "--save", "", "--appendonly", "no"], {
        stdio: "ignore",
      }),
    );
    const redis = new Redis(port);
    await until("redis to answer", () => redis.cli("PING").trim() === "PONG");
    return redis;
  }

  cli(...args: string[]): string {
    try {
      return execFileSync("redis-cli", ["-p", String(this.port), ...args], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "ignore"],
      });
    } catch {
      return "";
    }
  }
}

/** What a node's configuration adds to the app (TOML lines of `[[pusher.apps]]`) and to the file. */
export interface NodeOptions {
  app?: string[];
  extra?: string[];
}

export class Node {
  constructor(
    readonly port: number,
    readonly process: ChildProcess,
  ) {}

  /** A `switchyard serve` on Redis with the test app, its client events on. */
  static async start(redis: Redis, options: NodeOptions = {}): Promise<Node> {
    const dir = mkdtempSync(join(tmpdir(), "switchyard-pusher-"));
    const config = [
      `broker.redis_url = "redis://127.0.0.1:${redis.port}"`,
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
    const child = track(
      spawn(binary, ["serve", "--listen", "127.0.0.1:0", "--config", join(dir, "node.toml")], {
        env: { ...process.env, RUST_LOG: "info", NO_COLOR: "1" },
        stdio: ["ignore", "ignore", "pipe"],
      }),
    );
    const port = await new Promise<number>((done, fail) => {
      let log = "";
      child.stderr?.setEncoding("utf8");
      child.stderr?.on("data", (chunk: string) => {
        log += chunk;
        const up = /switchyard is up.*listen=127\.0\.0\.1:(\d+)/.exec(log);
        if (up) done(Number(up[1]));
      });
      child.on("exit", (code) => fail(new Error(`switchyard exited (${code}) before it was up:\n${log}`)));
    });
    child.stderr?.resume();
    rmSync(dir, { recursive: true, force: true });
    return new Node(port, child);
  }

  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    this.process.kill(signal);
  }

  /** The value of a counter with `labels` (e.g. `code="4300"`) on this node's /metrics; 0 when absent. */
  async metric(name: string, labels = ""): Promise<number> {
    const text = await (await fetch(`http://127.0.0.1:${this.port}/metrics`)).text();
    const want = labels ? `${name}{${labels}} ` : `${name} `;
    const line = text.split("\n").find((l) => l.startsWith(want));
    return Number(line?.split(" ")[1] ?? 0);
  }
}

/** haproxy on a free port in front of `nodes`, round robin, health-checked on /readyz. */
export class Haproxy {
  constructor(readonly port: number) {}

  static async start(nodes: Node[]): Promise<Haproxy> {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), "switchyard-haproxy-"));
    const servers = nodes.map(
      (n, i) =>
        `  server n${i} 127.0.0.1:${n.port} check inter 200ms fall 1 rise 1 observe layer4 error-limit 1 on-error mark-down`,
    );
    const config = [
      "global",
      "  maxconn 4096",
      "defaults",
      "  mode http",
      "  timeout connect 1s",
      "  timeout client 60s",
      "  timeout server 60s",
      "  timeout tunnel 1h",
      "  retries 3",
      "  option redispatch",
      "  retry-on conn-failure empty-response response-timeout 503",
      "frontend fe",
      `  bind 127.0.0.1:${port}`,
      "  default_backend nodes",
      "backend nodes",
      "  balance roundrobin",
      "  option httpchk GET /readyz",
      ...servers,
      "",
    ].join("\n");
    writeFileSync(join(dir, "haproxy.cfg"), config);
    track(spawn("haproxy", ["-f", join(dir, "haproxy.cfg"), "-db"], { stdio: "ignore" }));
    try {
      await until("haproxy to listen", async () => {
        try {
          return (await fetch(`http://127.0.0.1:${port}/readyz`)).ok;
        } catch {
          return false;
        }
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    return new Haproxy(port);
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
