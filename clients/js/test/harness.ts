// Real parts for the SDK's integration tests: `redis-server`, `switchyard`
// nodes and haproxy on 127.0.0.1 with free ports, each killed when the
// test ends (pass or fail), and HS256 tokens for the nodes' secret.

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const SECRET = "sdk-test-secret-of-32-bytes-long";
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

/**
 * Waits until `check` holds, polling; fails after DEADLINE with `what`.
 * Counts on the monotonic clock: the wall clock of a virtual machine can
 * step, and a step forward would end the wait early.
 */
export async function until(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  const end = performance.now() + DEADLINE;
  while (!(await check())) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export class Redis {
  constructor(
    readonly port: number,
    readonly process: ChildProcess,
  ) {}

  static async start(): Promise<Redis> {
    const port = await freePort();
    const child = track(
      spawn("redis-server", ["--bind", "127.0.0.1", "--port", String(port), "--save", "", "--appendonly", "no"], {
        stdio: "ignore",
      }),
    );
    const redis = new Redis(port, child);
    await until("redis to answer", () => redis.cli("PING").trim() === "PONG");
    return redis;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
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

export class Node {
  constructor(
    readonly port: number,
    readonly process: ChildProcess,
  ) {}

  /** A `switchyard serve` on Redis, with `chat:` keeping history and the test secret. */
  static async start(redis: Redis, env: Record<string, string> = {}): Promise<Node> {
    const child = track(
      spawn(binary, ["serve", "--listen", "127.0.0.1:0"], {
        env: {
          ...process.env,
          RUST_LOG: "info",
          NO_COLOR: "1",
          SWITCHYARD_REDIS_URL: redis.url,
          SWITCHYARD_AUTH_HMAC_SECRET: SECRET,
          SWITCHYARD_NAMESPACES__CHAT__HISTORY_SIZE: "10000",
          SWITCHYARD_NAMESPACES__CHAT__HISTORY_TTL: "10m",
          SWITCHYARD_NAMESPACES__TICKER__HISTORY_SIZE: "1000",
          SWITCHYARD_NAMESPACES__TICKER__HISTORY_TTL: "10m",
          SWITCHYARD_SHUTDOWN__DRAIN_PERIOD: "200ms",
          ...env,
        },
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
    return new Node(port, child);
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    this.process.kill(signal);
  }
}

/** haproxy on a free port in front of `nodes`, round robin, health-checked on /readyz. */
export class Haproxy {
  constructor(
    readonly port: number,
    readonly process: ChildProcess,
  ) {}

  static async start(nodes: Node[]): Promise<Haproxy> {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), "switchyard-haproxy-"));
    const servers = nodes
      .map(
        (n, i) =>
          `  server n${i} 127.0.0.1:${n.port} check inter 200ms fall 1 rise 1 observe layer4 error-limit 1 on-error mark-down`,
      )
      .join("\n");
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
      servers,
      "",
    ].join("\n");
    writeFileSync(join(dir, "haproxy.cfg"), config);
    const child = track(spawn("haproxy", ["-f", join(dir, "haproxy.cfg"), "-db"], { stdio: "ignore" }));
    const proxy = new Haproxy(port, child);
    try {
      await until("haproxy to listen", async () => {
        try {
          return (await fetch(`http://127.0.0.1:${port}/readyz`)).ok;
        } catch {
          return false;
        }
      });
    } finally {
      // haproxy read its configuration when it started.
      rmSync(dir, { recursive: true, force: true });
    }
    return proxy;
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
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

/** The value of a counter (without labels) on a node's /metrics. */
export async function counter(node: Node, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${node.port}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return Number(line?.split(" ")[1] ?? 0);
}
