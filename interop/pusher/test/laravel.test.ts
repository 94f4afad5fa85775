// Laravel Echo with its `pusher` broadcaster against a two-node cluster:
// what a Laravel application's front end does, with only the host changed.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import Echo from "laravel-echo";
import type PusherJs from "pusher-js";
import { Node, Redis, client, killAll, server, until } from "./harness.js";

describe("laravel-echo", () => {
  let redis: Redis;
  let nodes: Node[];
  const echoes: Echo<"pusher">[] = [];

  /** Echo on node `n`, signed as `id`, as `resources/js/bootstrap.js` sets it up. */
  function echo(n: number, id: string): Echo<"pusher"> {
    const pusher: PusherJs = client(nodes[n].port, { id });
    const instance = new Echo({ broadcaster: "pusher", key: "app-key", client: pusher });
    echoes.push(instance);
    return instance;
  }

  before(async () => {
    redis = await Redis.start();
    nodes = [await Node.start(redis), await Node.start(redis)];
  });

  after(() => {
    for (const instance of echoes) instance.disconnect();
    killAll();
  });

  it("listens on public and private channels to events broadcast by the backend", async () => {
    const front = echo(0, "ada");
    const shipped: unknown[] = [];
    const created: unknown[] = [];
    front.channel("orders").listen("OrderShipped", (e: unknown) => shipped.push(e));
    front.private("orders.7").listen(".order.created", (e: unknown) => created.push(e));
    const lib = server(nodes[1].port);
    // Laravel names events by class (App\Events\OrderShipped) unless broadcastAs says otherwise.
    await until("both subscriptions and events", async () => {
      if (shipped.length === 0) await lib.trigger("orders", "App\\Events\\OrderShipped", { id: 7 });
      if (created.length === 0) await lib.trigger("private-orders.7", "order.created", { id: 7 });
      return shipped.length > 0 && created.length > 0;
    });
    assert.deepEqual(shipped[0], { id: 7 });
    assert.deepEqual(created[0], { id: 7 });
  });

  it("joins presence channels: here, joining, leaving", async () => {
    const ada = echo(0, "ada");
    let here: { name: string }[] = [];
    const joining: string[] = [];
    const leaving: string[] = [];
    ada
      .join("room.1")
      .here((members: { name: string }[]) => (here = members))
      .joining((m: { name: string }) => joining.push(m.name))
      .leaving((m: { name: string }) => leaving.push(m.name));
    await until("ada to be here", () => here.length === 1);
    const bob = echo(1, "bob");
    bob.join("room.1");
    await until("bob to join", () => joining.includes("bob"));
    bob.leave("room.1");
    await until("bob to leave", () => leaving.includes("bob"));
    assert.deepEqual(here, [{ name: "ada" }]);
    assert.deepEqual(joining, ["bob"]);
    assert.deepEqual(leaving, ["bob"]);
  });

  it("whispers between two front ends", async () => {
    const ada = echo(0, "ada");
    const bob = echo(1, "bob");
    const heard: unknown[] = [];
    bob.private("chat.1").listenForWhisper("typing", (e: unknown) => heard.push(e));
    const channel = ada.private("chat.1");
    await until("the whisper", () => {
      if (heard.length === 0) channel.whisper("typing", { name: "ada" });
      return heard.length > 0;
    });
    assert.deepEqual(heard[0], { name: "ada" });
  });
});
