// The admin page in a real headless Chromium, on a two-node cluster: the
// login (a wrong password refused), both nodes, a channel's subscriber
// count as clients join, and a publication from the form that a
// subscriber receives. The JSON endpoint refuses requests without the
// session cookie. UPDATE_SCREENSHOTS=1 writes the screenshot into docs/.

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { after, describe, it } from "node:test";
import { chromium } from "playwright-core";
import WebSocket from "ws";
import { Client, type WebSocketConstructor } from "../../src/index.js";
import { Node, Redis, killAll, until } from "../harness.js";
import { CHROMIUM, FLAGS } from "./page.js";

after(killAll);

const PASSWORD = "correct horse battery staple";

describe("the admin page", () => {
  it("shows the cluster live and publishes from its form", async () => {
    const redis = await Redis.start();
    const env = {
      SWITCHYARD_ADMIN_PASSWORD: PASSWORD,
      SWITCHYARD_ADMIN__PUBLIC: "true",
      SWITCHYARD_BROKER__HEARTBEAT_INTERVAL: "300ms",
    };
    const a = await Node.start(redis, env);
    const b = await Node.start(redis, env);
    const base = `http://127.0.0.1:${a.port}`;

    // Without the cookie, the JSON endpoint answers nothing.
    assert.equal((await fetch(`${base}/admin/state`)).status, 401);
    assert.equal((await fetch(`${base}/admin/publish`, { method: "POST", body: "{}" })).status, 401);

    const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
    const clients: Client[] = [];
    try {
      const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
      await page.goto(`${base}/admin`);
      await page.fill("#password", "not the password");
      await page.click("#login button");
      await until("the refusal", async () => ((await page.textContent("#login-error")) ?? "") !== "");
      assert.match((await page.textContent("#login-error")) ?? "", /wrong password/);
      assert.equal(await page.isVisible("#admin-view"), false);

      await page.fill("#password", PASSWORD);
      await page.click("#login button");
      await page.waitForSelector("#admin-view:not(.hidden)");
      await until("both nodes", async () => (await page.locator("#nodes tr").count()) === 2);

      // Clients join a channel on both nodes: its row shows them.
      for (const [node, n] of [
        [a, 1],
        [b, 3],
      ] as const) {
        for (let i = 0; i < n; i++) {
          const client = new Client(node.url, { WebSocket: WebSocket as unknown as WebSocketConstructor });
          await client.connect();
          await client.subscribe("news").ready();
          clients.push(client);
        }
      }
      const newsRow = page.locator('#channels tr[data-channel="news"] td:nth-child(2)');
      await until(
        "four subscribers of news",
        async () => (await newsRow.count()) === 1 && (await newsRow.textContent()) === "4",
      );

      // Publish from the form; a subscriber on the other node gets it.
      const got = new Promise((done) => clients[3].getSubscription("news")?.on("publication", (p) => done(p.data)));
      await page.fill("#publish-channel", "news");
      await page.fill("#publish-data", '{"from":"admin"}');
      await page.click("#publish button");
      assert.deepEqual(await got, { from: "admin" });
      await until("the receipt", async () =>
        /4 connections on 2 nodes/.test((await page.textContent("#message")) ?? ""),
      );

      const shot = process.env.UPDATE_SCREENSHOTS
        ? resolve(import.meta.dirname, "../../../../../docs/admin.png")
        : resolve(import.meta.dirname, "../../admin.png");
      mkdirSync(resolve(shot, ".."), { recursive: true });
      await page.screenshot({ path: shot, fullPage: true });
    } finally {
      for (const client of clients) client.close();
      await browser.close();
    }
  });
});
