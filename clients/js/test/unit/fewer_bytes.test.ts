// Deltas in the SDK: its Fossil applier against the reference encoder (the
// `fossil-delta` package), the exact text of `pub.data` in a JSON frame,
// and a subscription that gets a delta which does not apply: it hands the
// application nothing made of it and subscribes again with recovery.

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it, mock } from "node:test";
import { createDelta } from "fossil-delta";
import { Client } from "../../src/client.js";
import { applyDelta } from "../../src/fossil.js";
import { pubDataText } from "../../src/wire_data.js";
import { FakeSocket } from "./fake_socket.js";

const utf8 = (s: string) => new TextEncoder().encode(s);
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("the Fossil applier", () => {
  it("applies what the reference encoder makes, and refuses what was changed", () => {
    let seed = 7;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let round = 0; round < 200; round++) {
      const source = Uint8Array.from({ length: Math.floor(random() * 3000) }, () => Math.floor(random() * 256));
      const target = Uint8Array.from(source);
      for (let edit = 0; edit < 5 && target.length > 0; edit++) {
        target[Math.floor(random() * target.length)] = Math.floor(random() * 256);
      }
      const delta = createDelta(source, target);
      assert.deepEqual(applyDelta(source, delta, 1 << 20), target);
      const broken = Uint8Array.from(delta);
      broken[broken.length - 2] = 0x30 + ((broken[broken.length - 2] ?? 0) % 10 === 9 ? 0 : 9);
      if (broken.join() !== delta.join()) assert.throws(() => applyDelta(source, broken, 1 << 20));
    }
    assert.throws(() => applyDelta(utf8("abc"), utf8("zz"), 100));
    assert.throws(() => applyDelta(utf8("abc"), utf8("3\n3@9,2;"), 100));
    assert.throws(() => applyDelta(utf8("abc"), createDelta(utf8("abc"), utf8("abcdef")), 5));
  });

  it("finds the exact text of pub.data in a JSON frame", () => {
    const data = '{ "a" : [1, 2.50, "}\\"]"],\n "b": {} }';
    assert.equal(pubDataText(`{"pub":{"channel":"c","data":${data},"offset":3}}`), data);
    assert.equal(pubDataText(`{ "pub" : { "channel" : "c:\\"x", "data" :  7 }}`), "7");
    assert.equal(pubDataText('{"pub":{"channel":"c","data":"text"}}'), '"text"');
    assert.equal(pubDataText('{"ping":{}}'), undefined);
  });
});

describe("a delta subscription", () => {
  beforeEach(() => {
    FakeSocket.reset();
    mock.timers.enable({ apis: ["setTimeout"] });
  });
  afterEach(() => mock.timers.reset());

  it("applies deltas, and recovers instead of handing out what a broken one would make", async () => {
    const c = new Client("ws://a/ws", { WebSocket: FakeSocket });
    const ready = c.connect();
    await settle();
    const ws = FakeSocket.last();
    ws.open();
    ws.accept();
    await ready;
    const seen: unknown[] = [];
    const sub = c.subscribe("state:x", { delta: "fossil" });
    sub.on("publication", (p) => seen.push([p.offset, p.data, "delta" in p]));
    const subscribe = ws.lastSent("subscribe") as { id: number; subscribe: Record<string, unknown> };
    assert.deepEqual(subscribe.subscribe, { channel: "state:x", delta: "fossil" });
    ws.receive({ id: subscribe.id, subscribe: { epoch: "e", offset: 0, delta: true } });
    await settle();

    const doc = (n: number) =>
      `{"n": ${n},  "rows": [${Array.from({ length: 20 }, (_, i) => `"row ${i}"`).join(", ")}]}`;
    const frame = (offset: number, data: string, delta: boolean) =>
      `{"pub":{"channel":"state:x","data":${data},"offset":${offset},"epoch":"e"${delta ? ',"delta":true' : ""}}}`;
    const deltaFrom = (source: string, to: number) =>
      JSON.stringify(new TextDecoder().decode(createDelta(utf8(source), utf8(doc(to)))));
    const deltaText = (from: number, to: number) => deltaFrom(doc(from), to);
    const send = (text: string) => ws.onmessage?.({ data: text });

    send(frame(1, doc(1), false));
    send(frame(2, deltaText(1, 2), true));
    assert.deepEqual(seen, [
      [1, JSON.parse(doc(1)), false],
      [2, JSON.parse(doc(2)), false],
    ]);
    // A delta against something else: nothing is delivered, and the
    // subscription is made again from offset 2.
    send(frame(3, deltaFrom(`  ${doc(2)}`, 3), true));
    send(frame(4, deltaText(3, 4), true));
    assert.equal(seen.length, 2);
    const unsubscribe = ws.lastSent("unsubscribe") as { id: number };
    assert.ok(unsubscribe, "unsubscribes first");
    ws.receive({ id: unsubscribe.id, unsubscribe: {} });
    await settle();
    const again = ws.lastSent("subscribe") as { id: number; subscribe: Record<string, unknown> };
    assert.notEqual(again.id, subscribe.id);
    assert.deepEqual(again.subscribe, { channel: "state:x", delta: "fossil", recover: true, epoch: "e", offset: 2 });
    ws.receive({
      id: again.id,
      subscribe: {
        epoch: "e",
        offset: 4,
        recovered: true,
        delta: true,
        publications: [3, 4].map((n) => ({
          channel: "state:x",
          data: JSON.parse(doc(n)) as unknown,
          offset: n,
          epoch: "e",
        })),
      },
    });
    await settle();
    send(frame(5, doc(5), false));
    send(frame(6, deltaText(5, 6), true));
    assert.deepEqual(
      seen.map((s) => (s as unknown[])[0]),
      [1, 2, 3, 4, 5, 6],
    );
    assert.deepEqual((seen[5] as unknown[])[1], JSON.parse(doc(6)));
    c.close();
  });
});
