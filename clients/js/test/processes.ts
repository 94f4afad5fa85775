// The real processes a test starts: `redis-server`, `switchyard` nodes and
// haproxy on 127.0.0.1 with free ports, each killed when the test ends
// (pass or fail). Shared by the SDK's tests (./harness.ts) and the Pusher
// interop tests (interop/pusher/test/harness.ts), which compile this file
// too: it imports nothing but Node's own modules.

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

/** How long a test waits for an event before it fails: generous, not a measurement. */
export const DEADLINE = 30_000;

/** The checkout's root: the nearest directory up with the workspace's Cargo.toml (this file is compiled into two places). */
function repoRoot(): string {
  let dir = import.meta.dirname;
  while (!existsSync(join(dir, "Cargo.toml")) || !existsSync(join(dir, "crates"))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`no checkout above ${import.meta.dirname}`);
    dir = up;
  }
  return dir;
}

const binary = process.env.SWITCHYARD_BIN ?? join(repoRoot(), "target/debug/switchyard");
const children = new Set<ChildProcess>();

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.on("exit", () => children.delete(child));
  return child;
}

/** Kills everything the tests started (call from `after`). */
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

/** A running `switchyard serve` and what the tests ask of it. */
export class SwitchyardNode {
  constructor(
    readonly port: number,
    readonly process: ChildProcess,
  ) {}

  /**
   * Starts `switchyard serve --listen 127.0.0.1:0 ...args` with `env` and
   * reads its port from the line it logs when it is up.
   */
  static async spawn(args: string[], env: Record<string, string>): Promise<SwitchyardNode> {
    const child = track(
      spawn(binary, ["serve", "--listen", "127.0.0.1:0", ...args], {
        env: { ...process.env, RUST_LOG: "info", NO_COLOR: "1", ...env },
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
    return new SwitchyardNode(port, child);
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    this.process.kill(signal);
  }

  /** The value of a metric with `labels` (e.g. `code="4300"`) on this node's /metrics; 0 when absent. */
  async metric(name: string, labels = ""): Promise<number> {
    const text = await (await fetch(`http://127.0.0.1:${this.port}/metrics`)).text();
    const want = labels ? `${name}{${labels}} ` : `${name} `;
    const line = text.split("\n").find((l) => l.startsWith(want));
    return Number(line?.split(" ")[1] ?? 0);
  }
}

/** haproxy on a free port in front of `nodes`, round robin, health-checked on /readyz. */
export class Haproxy {
  constructor(
    readonly port: number,
    readonly process: ChildProcess,
  ) {}

  static async start(nodes: SwitchyardNode[]): Promise<Haproxy> {
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
