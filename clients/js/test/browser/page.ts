// The demo page in a headless Chromium (Debian's, driven by
// playwright-core), served by demo/serve.mjs, for the browser tests.

import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { until } from "../harness.js";

export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
export const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** What the demo page exposes as `window.demo`. */
export interface DemoState {
  state: string;
  ticker: number[];
  chat: number[];
  gaps: unknown[];
  reconnects: number;
  tickerReady?: boolean;
}

export interface OpenPage {
  browser: Browser;
  context: BrowserContext;
  page: Page;
  /** The site's origin, `http://127.0.0.1:PORT`. */
  origin: string;
  demo: () => Promise<DemoState>;
  close: () => Promise<void>;
}

/** Serves the demo and opens `path` in a fresh browser; `withoutWebSocket` removes `window.WebSocket` first. */
export async function openPage(path: string, options: { withoutWebSocket?: boolean } = {}): Promise<OpenPage> {
  // @ts-expect-error: a plain ES module next to the page, without types.
  const { serve } = (await import("../../../demo/serve.mjs")) as {
    serve: (port: number) => Promise<{ server: { close(): void }; port: number }>;
  };
  const site = await serve(0);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
  const context = await browser.newContext();
  const page = await context.newPage();
  if (options.withoutWebSocket) {
    // A network (or a browser) where WebSockets do not exist.
    await page.addInitScript(() => {
      delete (window as { WebSocket?: unknown }).WebSocket;
    });
  }
  page.on("console", (m) => console.log("page:", m.text()));
  const origin = `http://127.0.0.1:${site.port}`;
  await page.goto(`${origin}${path}`);
  const demo = async () => (await page.evaluate("window.demo")) as DemoState;
  const close = async () => {
    await browser.close();
    site.server.close();
  };
  return { browser, context, page, origin, demo, close };
}

/** The demo page on the node (or balancer) at `wsUrl`, once it is subscribed. */
export async function openDemo(wsUrl: string, options: { withoutWebSocket?: boolean } = {}): Promise<OpenPage> {
  const open = await openPage(`/?ws=${encodeURIComponent(wsUrl)}`, options);
  await until("the page to subscribe", async () => (await open.demo())?.tickerReady === true);
  return open;
}
