// A soak under chaos: SDK clients (the TypeScript SDK, in Node) through a
// real haproxy on three switchyard nodes over one Redis (append-only file,
// fsync always), a backend publishing with idempotency keys, and a fault
// every 20-40 s chosen at random: SIGKILL, SIGTERM, SIGSTOP for 10 s, a
// Redis restart, or a silent path between one node and Redis. At the end:
// per client and summed, what was lost, duplicated, out of order, the gap
// events and reconnects; each node's RSS and open files over time.
//
//   node loadtest/soak/soak.mjs --duration 3600 --clients 1000 --out DIR
//
// Everything runs on 127.0.0.1 and stops by itself after --duration.

import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import { join, resolve } from "node:path";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => {
    if (arg.startsWith("--")) pairs.push([arg.slice(2), all[i + 1]]);
    return pairs;
  }, []),
);
const DURATION = Number(args.duration ?? 3600) * 1000;
const CLIENTS = Number(args.clients ?? 1000);
const CHANNELS = Number(args.channels ?? 10);
const RATE = Number(args.rate ?? 50); // publications per second, all channels
const OUT = resolve(args.out ?? "target/soak");
const repo = resolve(import.meta.dirname, "../..");
const BINARY = args.binary ?? join(repo, "target/release/switchyard");
const require = createRequire(join(repo, "clients/js/package.json"));
const WebSocket = require("ws");
const { Client } = await import(join(repo, "clients/js/dist/index.js"));

mkdirSync(OUT, { recursive: true });
const log = (...line) => console.log(new Date().toISOString(), ...line);
const children = new Set();
const track = (child) => {
  children.add(child);
  child.on("exit", () => children.delete(child));
  return child;
};
process.on("exit", () => children.forEach((c) => c.kill("SIGKILL")));

async function freePort() {
  return new Promise((done) => {
    const server = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => done(port));
    });
  });
}

async function until(what, check, deadline = 60_000) {
  const end = performance.now() + deadline;
  while (!(await check())) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// --- Redis, with an append-only file fsynced on every write ---
const redisPort = await freePort();
const redisDir = join(OUT, "redis");
mkdirSync(redisDir, { recursive: true });
function startRedis() {
  return track(
    spawn(
      "redis-server",
      ["--bind", "127.0.0.1", "--port", String(redisPort), "--dir", redisDir, "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
      { stdio: "ignore" },
    ),
  );
}
let redis = startRedis();
const cli = (...a) => execFileSync("redis-cli", ["-p", String(redisPort), ...a], { encoding: "utf8" }).trim();
await until("redis", () => {
  try {
    return cli("PING") === "PONG";
  } catch {
    return false;
  }
});

// --- a silent-able path per node: a TCP relay that can stop moving bytes ---
function relay(target) {
  const server = net.createServer((client) => {
    const upstream = net.connect(target, "127.0.0.1");
    const pipe = (from, to) => from.on("data", (d) => (relayState.silent ? held.push([to, d]) : to.write(d)));
    const relayState = server.state;
    const held = server.held;
    pipe(client, upstream);
    pipe(upstream, client);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  });
  server.state = { silent: false };
  server.held = [];
  server.setSilent = (silent) => {
    server.state.silent = silent;
    if (!silent) for (const [to, d] of server.held.splice(0)) if (!to.destroyed) to.write(d);
  };
  return new Promise((done) => server.listen(0, "127.0.0.1", () => done(server)));
}

// --- three nodes, each through its own relay to Redis ---
const nodes = [];
async function startNode(slot) {
  const path = nodes[slot]?.path ?? (await relay(redisPort));
  const port = nodes[slot]?.port ?? (await freePort());
  const child = track(
    spawn(BINARY, ["serve", "--listen", `127.0.0.1:${port}`], {
      env: {
        ...process.env,
        RUST_LOG: "warn",
        SWITCHYARD_REDIS_URL: `redis://127.0.0.1:${path.address().port}`,
        SWITCHYARD_NAMESPACES__CHAT__HISTORY_SIZE: "100000",
        SWITCHYARD_NAMESPACES__CHAT__HISTORY_TTL: "2h",
        SWITCHYARD_SHUTDOWN__DRAIN_PERIOD: "2s",
        SWITCHYARD_CLIENT__SESSION_TTL: "10m",
        SWITCHYARD_LIMITS__MAX_CONNECTIONS: "100000",
      },
      stdio: "ignore",
    }),
  );
  nodes[slot] = { slot, port, path, child };
  await until(`node ${slot}`, async () => {
    try {
      return (await fetch(`http://127.0.0.1:${port}/readyz`)).ok;
    } catch {
      return false;
    }
  });
}
for (const slot of [0, 1, 2]) await startNode(slot);

// --- haproxy in front, least connections, health-checked on /readyz ---
const proxyPort = await freePort();
writeFileSync(
  join(OUT, "haproxy.cfg"),
  [
    "global",
    "  maxconn 8000",
    "defaults",
    "  mode http",
    "  timeout connect 1s",
    "  timeout client 120s",
    "  timeout server 120s",
    "  timeout tunnel 2h",
    "  retries 3",
    "  option redispatch",
    "frontend fe",
    `  bind 127.0.0.1:${proxyPort}`,
    "  default_backend nodes",
    "backend nodes",
    "  balance leastconn",
    "  option httpchk GET /readyz",
    ...nodes.map((n) => `  server n${n.slot} 127.0.0.1:${n.port} check inter 500ms fall 1 rise 2`),
    "",
  ].join("\n"),
);
track(spawn("haproxy", ["-f", join(OUT, "haproxy.cfg"), "-db"], { stdio: "ignore" }));
await until("haproxy", async () => {
  try {
    return (await fetch(`http://127.0.0.1:${proxyPort}/readyz`)).ok;
  } catch {
    return false;
  }
});
log(`redis :${redisPort}, nodes ${nodes.map((n) => n.port).join(" ")}, haproxy :${proxyPort}`);

// --- the clients: each on one channel, recording every offset ---
const channel = (i) => `chat:soak${i % CHANNELS}`;
const clients = [];
for (let i = 0; i < CLIENTS; i++) {
  const record = { offsets: [], gaps: 0, reconnects: 0 };
  const client = new Client(`ws://127.0.0.1:${proxyPort}/ws`, {
    WebSocket,
    minReconnectDelay: 200,
    maxReconnectDelay: 5000,
    ackInterval: 1000,
  });
  client.on("connected", () => record.reconnects++);
  await client.connect();
  const sub = client.subscribe(channel(i));
  sub.on("publication", (p) => record.offsets.push(p.offset));
  sub.on("gap", () => record.gaps++);
  await sub.ready();
  clients.push({ i, client, record });
  if (i % 100 === 99) log(`${i + 1} clients in`);
}
for (const c of clients) c.record.reconnects = 0;

// --- the backend: FCALL with an idempotency key per publication, retried
// until Redis answers, so each is published exactly once ---
const published = new Map(); // channel -> last offset
let next = 0;
let publishing = true;
async function publishOne() {
  const n = next++;
  const ch = channel(n);
  for (;;) {
    try {
      const reply = cli("FCALL", "switchyard_publish", "1", ch, String(n), `soak-${n}`).split("\n");
      const offset = Number(reply[1]);
      // Anything but [epoch, offset] (LOADING after a restart, an error
      // reply) did not publish: try again with the same key.
      if (reply.length !== 2 || !Number.isInteger(offset) || offset < 1) throw new Error(reply.join(" "));
      published.set(ch, Math.max(published.get(ch) ?? 0, offset));
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}
const backend = (async () => {
  while (publishing) {
    const started = performance.now();
    for (let k = 0; k < RATE / 10; k++) await publishOne();
    await new Promise((r) => setTimeout(r, Math.max(0, 100 - (performance.now() - started))));
  }
})();

// --- each node's RSS and open files, every 10 s ---
const usage = [];
const sampler = setInterval(() => {
  const row = { t: Math.round(performance.now() / 1000) };
  for (const n of nodes) {
    try {
      const status = readFileSync(`/proc/${n.child.pid}/status`, "utf8");
      row[`rss${n.slot}`] = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
      row[`pid${n.slot}`] = n.child.pid;
      row[`fds${n.slot}`] = readdirSync(`/proc/${n.child.pid}/fd`).length;
    } catch {
      row[`rss${n.slot}`] = null;
    }
  }
  usage.push(row);
}, 10_000);

// --- the faults ---
const faults = [];
const pick = (list) => list[Math.floor(Math.random() * list.length)];
const end = performance.now() + DURATION;
while (performance.now() < end - 30_000) {
  await new Promise((r) => setTimeout(r, 20_000 + Math.random() * 20_000));
  let node = pick(nodes);
  const kind = pick(["SIGKILL", "SIGTERM", "SIGSTOP", "redis-restart", "silent-path"]);
  // Node slot 2 is never killed (stopped and cut off, yes): it lives
  // through the run, so that its memory over the second half says whether
  // anything grows without bound.
  if ((kind === "SIGKILL" || kind === "SIGTERM") && node.slot === 2) node = nodes[Math.floor(Math.random() * 2)];
  log(`fault: ${kind}${kind.startsWith("SIG") || kind === "silent-path" ? ` on node ${node.slot}` : ""}`);
  faults.push({ t: Math.round(performance.now() / 1000), kind, node: node.slot });
  if (kind === "SIGKILL" || kind === "SIGTERM") {
    node.child.kill(kind);
    await new Promise((r) => node.child.once("exit", r));
    await startNode(node.slot);
  } else if (kind === "SIGSTOP") {
    node.child.kill("SIGSTOP");
    await new Promise((r) => setTimeout(r, 10_000));
    node.child.kill("SIGCONT");
  } else if (kind === "redis-restart") {
    redis.kill("SIGKILL");
    await new Promise((r) => redis.once("exit", r));
    redis = startRedis();
    await until("redis back", () => {
      try {
        return cli("PING") === "PONG";
      } catch {
        return false;
      }
    });
  } else {
    node.path.setSilent(true);
    await new Promise((r) => setTimeout(r, 15_000));
    node.path.setSilent(false);
  }
}

// --- wind down: stop publishing, let everyone catch up, then count ---
publishing = false;
await backend;
await until(
  "every client to reach the last offset of its channel",
  () => clients.every((c) => (c.record.offsets.at(-1) ?? 0) >= (published.get(channel(c.i)) ?? 0)),
  120_000,
).catch((e) => log(e.message));
clearInterval(sampler);

const rows = clients.map(({ i, record }) => {
  const last = published.get(channel(i)) ?? 0;
  const first = record.offsets[0] ?? 1;
  const seen = new Set(record.offsets);
  let outOfOrder = 0;
  for (let k = 1; k < record.offsets.length; k++) if (record.offsets[k] <= record.offsets[k - 1]) outOfOrder++;
  let lost = 0;
  for (let o = first; o <= last; o++) if (!seen.has(o)) lost++;
  return {
    client: i,
    channel: channel(i),
    last,
    final: record.offsets.at(-1) ?? null,
    lost,
    duplicated: record.offsets.length - seen.size,
    outOfOrder,
    gaps: record.gaps,
    reconnects: record.reconnects,
  };
});
const sum = (key) => rows.reduce((s, r) => s + r[key], 0);
const total = {
  clients: CLIENTS,
  publications: next,
  lost: sum("lost"),
  duplicated: sum("duplicated"),
  outOfOrder: sum("outOfOrder"),
  gaps: sum("gaps"),
  reconnects: sum("reconnects"),
  faults: faults.length,
};
// Growth of each node's RSS over the second half (flat after warm-up), over
// the longest stretch of it one process lived (a killed node restarts).
// Slot 2 is never killed: its stretch is the whole second half.
const half = usage.slice(Math.floor(usage.length / 2));
const growth = [0, 1, 2].map((s) => {
  let best = [];
  let run = [];
  for (const row of half) {
    if (!row[`rss${s}`]) continue;
    if (run.length && run[0][`pid${s}`] !== row[`pid${s}`]) run = [];
    run.push(row);
    if (run.length > best.length) best = [...run];
  }
  return best.length > 1 ? (best.at(-1)[`rss${s}`] - best[0][`rss${s}`]) / best[0][`rss${s}`] : 0;
});
writeFileSync(join(OUT, "soak.json"), JSON.stringify({ total, growth, faults, usage, rows }, null, 1));
log("total", JSON.stringify(total));
log("rss growth over the second half, per node slot", growth.map((g) => `${(g * 100).toFixed(1)} %`).join(", "));
for (const { client } of clients) client.close();
process.exit(total.lost + total.duplicated + total.outOfOrder + total.gaps === 0 ? 0 : 1);
