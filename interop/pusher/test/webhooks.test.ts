// Webhooks from a two-node cluster to a backend that checks them with the
// official server library: each transition once per cluster, a node's
// death included, delivered again when the backend fails.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type PusherJs from "pusher-js";
import { KEY, Node, Redis, WebhookReceiver, client, killAll, until } from "./harness.js";

describe("webhooks", () => {
  let redis: Redis;
  let nodes: Node[];
  let receiver: WebhookReceiver;
  const open: PusherJs[] = [];

  function on(n: number, id = "anonymous"): PusherJs {
    const pusher = client(nodes[n].port, { id });
    open.push(pusher);
    return pusher;
  }

  /** The events received for `channel`, by name (and user), in order. */
  function about(channel: string): string[] {
    return receiver
      .events()
      .filter((e) => e.channel === channel)
      .map((e) => (e.user_id ? `${e.name}:${e.user_id}` : e.name));
  }

  /**
   * Makes every node announce a transition of a channel of its own and
   * waits for them: each node sends its events in order, so what it had
   * queued before has arrived too.
   */
  async function flush(round: string): Promise<void> {
    const markers = nodes.map((_, i) => `marker-${round}-${i}`);
    const clients = markers.map((name, i) => {
      const pusher = on(i);
      pusher.subscribe(name);
      return pusher;
    });
    await until(`the markers of ${round}`, () => markers.every((m) => about(m).includes("channel_occupied")));
    for (const pusher of clients) pusher.disconnect();
  }

  before(async () => {
    redis = await Redis.start();
    // The first two requests fail: their events must come again.
    receiver = await WebhookReceiver.start(2);
    const options = {
      extra: [`broker.presence_ttl = "2s"`],
      app: ["[[pusher.apps.webhooks]]", `url = "${receiver.url}"`, `batch_delay = "20ms"`],
    };
    nodes = [await Node.start(redis, options), await Node.start(redis, options)];
  });

  after(() => {
    for (const pusher of open) pusher.disconnect();
    receiver.close();
    killAll();
  });

  it("announces occupied and vacated once across two nodes, through a backend that fails at first", async () => {
    const a = on(0);
    const b = on(1);
    const ca = a.subscribe("watched");
    await until("the first subscription", () => ca.subscribed);
    const cb = b.subscribe("watched");
    await until("the second subscription", () => cb.subscribed);
    await until("channel_occupied", () => about("watched").includes("channel_occupied"));
    a.unsubscribe("watched");
    b.unsubscribe("watched");
    await until("channel_vacated", () => about("watched").includes("channel_vacated"));
    await flush("vacated");
    assert.deepEqual(about("watched"), ["channel_occupied", "channel_vacated"]);
    assert.equal(receiver.failed, 2, "the first requests failed and were sent again");
    assert.ok(receiver.received.every((r) => r.valid && r.headers["x-pusher-key"] === KEY));
    assert.ok(await nodes[0].metric("switchyard_webhook_requests_total", 'outcome="ok"'), "requests are counted");
  });

  it("announces each user's arrival and departure on a presence channel once", async () => {
    const ada = on(0, "ada");
    const adaAgain = on(1, "ada");
    const bob = on(1, "bob");
    for (const pusher of [ada, adaAgain, bob]) pusher.subscribe("presence-hooks");
    await until("three subscriptions", () =>
      [ada, adaAgain, bob].every((p) => p.channel("presence-hooks")?.subscribed),
    );
    for (const pusher of [ada, adaAgain, bob]) pusher.unsubscribe("presence-hooks");
    await until("the departures", () => about("presence-hooks").includes("channel_vacated"));
    await flush("members");
    const events = about("presence-hooks");
    assert.deepEqual(events.filter((e) => e.startsWith("member_added")).sort(), [
      "member_added:ada",
      "member_added:bob",
    ]);
    assert.deepEqual(events.filter((e) => e.startsWith("member_removed")).sort(), [
      "member_removed:ada",
      "member_removed:bob",
    ]);
  });

  it("announces client events with their sender", async () => {
    const a = on(0, "ada");
    const channel = a.subscribe("private-typing");
    await until("the subscription", () => channel.subscribed);
    channel.trigger("client-typing", { who: "ada" });
    await until("the client_event", () => about("private-typing").includes("client_event"));
    const event = receiver.events().find((e) => e.name === "client_event");
    assert.equal(event?.event, "client-typing");
    assert.deepEqual(JSON.parse(event?.data ?? "null"), { who: "ada" });
    assert.equal((event as { socket_id?: string } | undefined)?.socket_id, a.connection.socket_id);
  });

  it("vacates a channel whose only node was killed, once, after the presence TTL", async () => {
    const doomed = on(1, "carol");
    doomed.subscribe("held-by-one");
    doomed.subscribe("presence-held-by-one");
    await until("both channels occupied", () =>
      ["held-by-one", "presence-held-by-one"].every((c) => about(c).includes("channel_occupied")),
    );
    nodes[1].kill();
    doomed.disconnect();
    await until("the dead node's channels to be vacated", () =>
      ["held-by-one", "presence-held-by-one"].every((c) => about(c).includes("channel_vacated")),
    );
    nodes = [nodes[0]];
    await flush("after-kill");
    assert.deepEqual(about("held-by-one"), ["channel_occupied", "channel_vacated"]);
    const presence = about("presence-held-by-one");
    assert.deepEqual(presence.slice(0, 2), ["channel_occupied", "member_added:carol"]);
    // The sweep finds both at once, in no particular order.
    assert.deepEqual(presence.slice(2).sort(), ["channel_vacated", "member_removed:carol"]);
  });
});
