// pusher-js's browser build in headless Chromium (Debian's, driven by
// playwright-core), on pages served by an application backend whose auth
// endpoint is built on the official server library, through haproxy in
// front of two nodes.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { createRequire } from "node:module";
import { dirname, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { chromium, type Browser, type Page } from "playwright-core";
import { Haproxy, KEY, Node, Redis, freePort, killAll, server, until } from "./harness.js";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"];
// pusher-js's browser build, beside its Node build (which is what the package resolves to).
const bundle = readFileSync(
  resolve(dirname(createRequire(import.meta.url).resolve("pusher-js")), "../web/pusher.min.js"),
  "utf8",
);

/** What a page records, as `window.seen`. */
interface Seen {
  state: string;
  events: string[];
}

/** The application's page: pusher-js from its CDN build, authorized by the backend's `/pusher/auth`. */
function page(wsPort: number, user: string): string {
  return `<!doctype html><html><body><script src="/pusher.min.js"></script><script>
    window.seen = { state: "new", events: [] };
    const pusher = new Pusher(${JSON.stringify(KEY)}, {
      wsHost: "127.0.0.1", wsPort: ${wsPort}, forceTLS: false, enabledTransports: ["ws"], cluster: "local",
      channelAuthorization: { endpoint: "/pusher/auth?user=${user}", transport: "ajax" },
    });
    pusher.connection.bind("state_change", (s) => (window.seen.state = s.current));
    const room = pusher.subscribe("presence-browsers");
    room.bind("pusher:subscription_succeeded", (m) => window.seen.events.push("here:" + Object.keys(m.members).sort().join(",")));
    room.bind("pusher:member_added", (m) => window.seen.events.push("added:" + m.id));
    room.bind("client-wave", (d, meta) => window.seen.events.push("wave:" + d.from + ":" + meta.user_id));
    const orders = pusher.subscribe("private-orders");
    orders.bind("created", (d) => window.seen.events.push("order:" + d.id));
    window.wave = () => room.trigger("client-wave", { from: ${JSON.stringify(user)} });
  </script></body></html>`;
}

describe("pusher-js in Chromium", () => {
  let redis: Redis;
  let nodes: Node[];
  let balancer: Haproxy;
  let backend: Server;
  let backendPort: number;
  let browser: Browser;

  before(async () => {
    redis = await Redis.start();
    nodes = [await Node.start(redis), await Node.start(redis)];
    balancer = await Haproxy.start(nodes);
    const lib = server(balancer.port);
    backendPort = await freePort();
    backend = createServer((req, res) => {
      const url = new URL(req.url ?? "/", `http://127.0.0.1:${backendPort}`);
      const user = url.searchParams.get("user") ?? "anonymous";
      if (url.pathname === "/pusher.min.js") {
        res.writeHead(200, { "content-type": "text/javascript" }).end(bundle);
      } else if (url.pathname === "/pusher/auth") {
        let body = "";
        req.on("data", (chunk) => (body += chunk));
        req.on("end", () => {
          const form = new URLSearchParams(body);
          const socketId = form.get("socket_id") ?? "";
          const channel = form.get("channel_name") ?? "";
          const presence = channel.startsWith("presence-") ? { user_id: user, user_info: { name: user } } : undefined;
          const auth = lib.authorizeChannel(socketId, channel, presence);
          res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(auth));
        });
      } else {
        res.writeHead(200, { "content-type": "text/html" }).end(page(balancer.port, user));
      }
    });
    await new Promise<void>((done) => backend.listen(backendPort, "127.0.0.1", done));
    browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
  });

  after(async () => {
    await browser?.close();
    backend?.close();
    killAll();
  });

  async function open(user: string): Promise<Page> {
    const context = await browser.newContext();
    const tab = await context.newPage();
    tab.on("console", (m) => console.log(`${user}:`, m.text()));
    await tab.goto(`http://127.0.0.1:${backendPort}/?user=${user}`);
    return tab;
  }

  const seen = async (tab: Page) => (await tab.evaluate("window.seen")) as Seen;

  it("joins presence across two browsers, relays client events between them and delivers the backend's events", async () => {
    const ada = await open("ada");
    await until("ada to be here", async () => (await seen(ada)).events.includes("here:ada"));
    const bob = await open("bob");
    await until("bob to see both", async () => (await seen(bob)).events.includes("here:ada,bob"));
    await until("ada to see bob arrive", async () => (await seen(ada)).events.includes("added:bob"));
    await bob.evaluate("window.wave()");
    await until("ada to see bob wave", async () => (await seen(ada)).events.includes("wave:bob:bob"));
    assert.ok(!(await seen(bob)).events.some((e) => e.startsWith("wave:")), "not echoed to the sender");
    await until("both to get the order", async () => {
      const [a, b] = [await seen(ada), await seen(bob)];
      if (!a.events.includes("order:7") || !b.events.includes("order:7")) {
        await server(nodes[1].port).trigger("private-orders", "created", { id: 7 });
      }
      return a.events.includes("order:7") && b.events.includes("order:7");
    });
    assert.equal((await seen(ada)).state, "connected");
  });
});
