// pusher-js and the official server library against two switchyard nodes
// on one Redis, behind haproxy: every kind of channel, across nodes.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import type PusherJs from "pusher-js";
import type { PresenceChannel } from "pusher-js";
import { APP_ID, Haproxy, KEY, Node, Redis, SECRET, client, connected, killAll, server, until } from "./harness.js";

describe("pusher-js on a two-node cluster", () => {
  let redis: Redis;
  let nodes: Node[];
  let balancer: Haproxy;
  const open: PusherJs[] = [];

  /** A client on node `n` (0 or 1) directly, or through the balancer. */
  function on(n: number | "balancer", id = "anonymous"): PusherJs {
    const port = n === "balancer" ? balancer.port : nodes[n].port;
    const pusher = client(port, { id });
    open.push(pusher);
    return pusher;
  }

  before(async () => {
    redis = await Redis.start();
    // A third node: the last two tests take one node away each.
    nodes = [await Node.start(redis), await Node.start(redis), await Node.start(redis)];
    balancer = await Haproxy.start(nodes);
  });

  after(() => {
    for (const pusher of open) pusher.disconnect();
    killAll();
  });

  it("delivers events triggered on one node to a public channel's subscribers on the other", async () => {
    const a = on(0);
    const got: unknown[] = [];
    const channel = a.subscribe("news");
    channel.bind("update", (data: unknown) => got.push(data));
    await until("the subscription", () => channel.subscribed);
    await server(nodes[1].port).trigger("news", "update", { headline: "hello", n: 1 });
    await server(nodes[1].port).trigger(["news", "other"], "update", "plain text");
    await until("both events", () => got.length === 2);
    assert.deepEqual(got, [{ headline: "hello", n: 1 }, "plain text"]);
  });

  it("authorizes private channels with the app's secret and refuses a bad signature", async () => {
    const a = on(0);
    const got: unknown[] = [];
    const channel = a.subscribe("private-orders");
    channel.bind("created", (data: unknown) => got.push(data));
    await until("the private subscription", () => channel.subscribed);
    await server(nodes[1].port).trigger("private-orders", "created", { id: 7 });
    await until("the event", () => got.length === 1);

    const forger = client(
      nodes[0].port,
      { id: "x" },
      {
        channelAuthorization: {
          endpoint: "",
          transport: "ajax",
          customHandler: (_params, callback) => callback(null, { auth: `${KEY}:${"0".repeat(64)}` }),
        },
      },
    );
    open.push(forger);
    const errors: { status: number; type: string }[] = [];
    const refused = forger.subscribe("private-orders");
    refused.bind("pusher:subscription_error", (e: { status: number; type: string }) => errors.push(e));
    await until("the refusal", () => errors.length === 1);
    assert.equal(errors[0].status, 401);
    assert.equal(errors[0].type, "AuthError");
    assert.equal(refused.subscribed, false);
  });

  it("keeps one presence member list across nodes, a user counted once however many connections", async () => {
    const ada = on(0, "ada");
    const added: string[] = [];
    const removed: string[] = [];
    const room = ada.subscribe("presence-room") as PresenceChannel;
    room.bind("pusher:member_added", (m: { id: string }) => added.push(m.id));
    room.bind("pusher:member_removed", (m: { id: string }) => removed.push(m.id));
    await until("ada's subscription", () => room.subscribed);
    assert.equal(room.members.count, 1);

    const bob = on(1, "bob");
    const bobsRoom = bob.subscribe("presence-room") as PresenceChannel;
    await until("bob's subscription", () => bobsRoom.subscribed);
    await until("bob to be added for ada", () => added.includes("bob"));
    assert.equal(bobsRoom.members.count, 2);
    assert.deepEqual(Object.keys(bobsRoom.members.members).sort(), ["ada", "bob"]);
    assert.deepEqual(bobsRoom.members.get("ada").info, { name: "ada" });

    // Bob again, on the other node: no second arrival, and his first
    // connection leaving is no departure.
    const bobAgain = on(0, "bob");
    const again = bobAgain.subscribe("presence-room") as PresenceChannel;
    await until("bob's second subscription", () => again.subscribed);
    assert.equal(again.members.count, 2);
    const users = await (await server(nodes[1].port).get({ path: "/channels/presence-room/users" })).json();
    assert.deepEqual(users.users.map((u: { id: string }) => u.id).sort(), ["ada", "bob"]);
    bob.disconnect();
    bobAgain.unsubscribe("presence-room");
    await until("bob to be removed for ada", () => removed.includes("bob"));
    assert.deepEqual(added, ["bob"], "bob arrived once");
    assert.deepEqual(removed, ["bob"], "bob left once");
  });

  it("relays client events between connections on different nodes, never to the sender", async () => {
    const ada = on(0, "ada");
    const bob = on(1, "bob");
    const adaGot: unknown[] = [];
    const bobGot: { data: unknown; user?: string }[] = [];
    const adaRoom = ada.subscribe("presence-chat");
    const bobRoom = bob.subscribe("presence-chat");
    adaRoom.bind("client-typing", (data: unknown) => adaGot.push(data));
    bobRoom.bind("client-typing", (data: unknown, meta?: { user_id?: string }) =>
      bobGot.push({ data, user: meta?.user_id }),
    );
    await until("both subscriptions", () => adaRoom.subscribed && bobRoom.subscribed);
    assert.ok(adaRoom.trigger("client-typing", { who: "ada" }));
    await until("bob to get it", () => bobGot.length === 1);
    assert.deepEqual(bobGot, [{ data: { who: "ada" }, user: "ada" }]);
    // A marker from bob: once ada has it, her own event would have come too.
    assert.ok(bobRoom.trigger("client-typing", { who: "bob" }));
    await until("ada to get bob's", () => adaGot.length === 1);
    assert.deepEqual(adaGot, [{ who: "bob" }]);
  });

  it("hands a cache channel's last event to a late subscriber, and says cache_miss when there is none", async () => {
    const lib = server(nodes[1].port);
    const a = on(0);
    const misses: unknown[] = [];
    const empty = a.subscribe("cache-empty");
    empty.bind("pusher:cache_miss", () => misses.push(true));
    await until("the cache miss", () => misses.length === 1);

    await lib.trigger("cache-prices", "price", { p: 1 });
    await lib.trigger("cache-prices", "price", { p: 2 });
    const got: unknown[] = [];
    const prices = a.subscribe("cache-prices");
    prices.bind("price", (data: unknown) => got.push(data));
    await until("the cached event", () => got.length === 1);
    assert.deepEqual(got, [{ p: 2 }]);
    await lib.trigger("cache-prices", "price", { p: 3 });
    await until("the next one live", () => got.length === 2);
    assert.deepEqual(got, [{ p: 2 }, { p: 3 }]);
  });

  it("leaves out the socket_id a trigger excludes, on whichever node it is", async () => {
    const a = on(0);
    const b = on(1);
    await connected(a);
    await connected(b);
    const aGot: unknown[] = [];
    const bGot: unknown[] = [];
    const ca = a.subscribe("excluded");
    const cb = b.subscribe("excluded");
    ca.bind("e", (d: unknown) => aGot.push(d));
    cb.bind("e", (d: unknown) => bGot.push(d));
    await until("both subscriptions", () => ca.subscribed && cb.subscribed);
    const lib = server(nodes[1].port);
    await lib.trigger("excluded", "e", 1, { socket_id: a.connection.socket_id });
    await lib.trigger("excluded", "e", 2, { socket_id: b.connection.socket_id });
    await lib.trigger("excluded", "e", 3);
    await until("the last event on both", () => aGot.includes(3) && bGot.includes(3));
    assert.deepEqual(aGot, [2, 3]);
    assert.deepEqual(bGot, [1, 3]);
  });

  it("answers the HTTP API cluster-wide: channels, channel info, batches", async () => {
    const a = on(0, "ada");
    const b = on(1, "bob");
    const pa = a.subscribe("presence-lobby");
    const pb = b.subscribe("presence-lobby");
    const pub = b.subscribe("public-lobby");
    await until("the subscriptions", () => pa.subscribed && pb.subscribed && pub.subscribed);
    const lib = server(nodes[0].port);
    const info = await (
      await lib.get({ path: "/channels/presence-lobby", params: { info: "subscription_count,user_count" } })
    ).json();
    assert.deepEqual(info, { occupied: true, subscription_count: 2, user_count: 2 });
    const list = await (
      await lib.get({ path: "/channels", params: { filter_by_prefix: "presence-", info: "user_count" } })
    ).json();
    assert.deepEqual(list.channels["presence-lobby"], { user_count: 2 });
    assert.ok(!("public-lobby" in list.channels));
    const empty = await (await lib.get({ path: "/channels/nobody-here" })).json();
    assert.deepEqual(empty, { occupied: false });

    const got: string[] = [];
    pub.bind("one", () => got.push("one"));
    pub.bind("two", () => got.push("two"));
    await lib.triggerBatch([
      { channel: "public-lobby", name: "one", data: "{}" },
      { channel: "public-lobby", name: "two", data: "{}" },
    ]);
    await until("the batch", () => got.length === 2);
    assert.deepEqual(got, ["one", "two"]);
  });

  it("signs users in, sends to a user on every node, and terminates their connections", async () => {
    const ada1 = on(0, "ada");
    const ada2 = on(1, "ada");
    const got: unknown[] = [];
    for (const pusher of [ada1, ada2]) {
      pusher.signin();
      pusher.user.bind("note", (data: unknown) => got.push(data));
    }
    await until("both sign-ins", () => ada1.user.user_data !== null && ada2.user.user_data !== null);
    const lib = server(nodes[0].port);
    // The user's channel is subscribed right after the sign-in: wait for it.
    await until("the note on both connections", async () => {
      if (got.length < 2) await lib.sendToUser("ada", "note", { n: got.length });
      return got.length >= 2;
    });
    await lib.terminateUserConnections("ada");
    // Closed with 4009: pusher-js does not reconnect.
    await until("both connections to end", () =>
      [ada1, ada2].every((pusher) => pusher.connection.state === "disconnected"),
    );
  });

  it("takes events from the Python server library too", async () => {
    const python = process.env.SWITCHYARD_TEST_PYTHON ?? "python3";
    const a = on(0);
    const got: unknown[] = [];
    const channel = a.subscribe("from-python");
    channel.bind("hello", (data: unknown) => got.push(data));
    await until("the subscription", () => channel.subscribed);
    const script = [
      "import pusher, sys",
      `client = pusher.Pusher(app_id="${APP_ID}", key="${KEY}", secret="${SECRET}", host="127.0.0.1", port=${nodes[1].port}, ssl=False)`,
      "client.trigger('from-python', 'hello', {'lang': 'python'})",
    ].join("\n");
    execFileSync(python, ["-c", script], { stdio: "inherit" });
    await until("the event", () => got.length === 1);
    assert.deepEqual(got, [{ lang: "python" }]);
  });

  /** Only `a` is connected: the live node whose gauge counts it holds it. */
  async function holderOf(live: Node[]): Promise<Node> {
    const gauge = (n: Node) => n.metric("switchyard_pusher_connections", `app="${APP_ID}"`);
    let holder: Node | undefined;
    await until("one node to hold the client", async () => {
      const counts = await Promise.all(live.map(gauge));
      holder = live[counts.indexOf(1)];
      return counts.reduce((x, y) => x + y, 0) === 1 && holder !== undefined;
    });
    return holder as Node;
  }

  /** A lone client through the balancer, subscribed to `channel`, and what it receives. */
  async function lone(channel: string): Promise<{ pusher: PusherJs; got: number[] }> {
    for (const pusher of open.splice(0)) pusher.disconnect();
    const pusher = on("balancer");
    await connected(pusher);
    const got: number[] = [];
    const subscription = pusher.subscribe(channel);
    subscription.bind("tick", (n: number) => got.push(n));
    await until("the subscription", () => subscription.subscribed);
    return { pusher, got };
  }

  it("keeps a subscriber receiving through the balancer when its node is killed", async () => {
    const { pusher, got } = await lone("survivor");
    const victim = await holderOf(nodes);
    nodes = nodes.filter((n) => n !== victim);
    victim.kill();
    const lib = server(nodes[0].port);
    await until("a delivery after the kill", async () => {
      await lib.trigger("survivor", "tick", got.length);
      return got.length > 0 && pusher.connection.state === "connected";
    });
  });

  it("moves a subscriber to another node with 4200 when its node drains", async () => {
    const { pusher, got } = await lone("drained");
    const codes: number[] = [];
    pusher.connection.bind("error", (e: { data?: { code?: number } }) => {
      if (e.data?.code) codes.push(e.data.code);
    });
    const draining = await holderOf(nodes);
    nodes = nodes.filter((n) => n !== draining);
    draining.kill("SIGTERM");
    await until("the drain's 4200", () => codes.includes(4200));
    const lib = server(nodes[0].port);
    await until("a delivery on the other node", async () => {
      await lib.trigger("drained", "tick", got.length);
      return got.length > 0 && pusher.connection.state === "connected";
    });
    // pusher-js reports the `pusher:error` and the close frame, both 4200.
    assert.ok(
      codes.every((c) => c === 4200),
      `told to reconnect at once, nothing else: ${codes}`,
    );
  });
});
