// The demo page: a chat room with history and a live ticker, over the SDK.
// Open it with ?ws=ws://host:port/ws (default: port 8080 of the page's host).
import { Client } from "../dist/index.js";

const params = new URLSearchParams(window.location.search);
const url = params.get("ws") ?? `ws://${window.location.hostname || "localhost"}:8080/ws`;
const $ = (id) => document.getElementById(id);

// What the page has seen, for people and for the browser tests.
const demo = { state: "disconnected", client: "", chat: [], ticker: [], gaps: [], reconnects: 0 };
window.demo = demo;

const client = new Client(url, { minReconnectDelay: 200, maxReconnectDelay: 5000 });
client.on("state", (state) => {
  demo.state = state;
  $("state").textContent = state;
  $("state").className = state;
});
client.on("connected", ({ client: id, resumed }) => {
  if (demo.client) demo.reconnects++;
  demo.client = id;
  $("client").textContent = `${id}${resumed ? " (resumed)" : ""}`;
  $("reconnects").textContent = String(demo.reconnects);
});
client.on("error", (e) => console.warn("switchyard:", e.code, e.message));

function addChat(publication) {
  demo.chat.push(publication.offset);
  const li = document.createElement("li");
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = publication.info?.user || publication.info?.client || "backend";
  li.append(who, String(publication.data?.text ?? JSON.stringify(publication.data)));
  $("chat").append(li);
  li.scrollIntoView({ block: "end" });
}

function showGap(gap) {
  demo.gaps.push(gap);
  const li = document.createElement("li");
  li.className = "gap";
  li.textContent = `${gap.channel}: missed ${gap.from?.offset ?? "?"}…${gap.to.offset} (${gap.reason})`;
  $("gaps").append(li);
}

await client.connect();

// The chat: the last 50 messages, then live ones after them.
const past = await client.history("chat:demo", { limit: 50 });
past.publications.forEach(addChat);
const last = past.publications.at(-1);
const chat = client.subscribe("chat:demo", { since: { epoch: past.epoch, offset: last?.offset ?? past.offset } });
chat.on("publication", addChat);
chat.on("gap", showGap);

const ticker = client.subscribe("ticker:demo");
ticker.on("publication", (p) => {
  demo.ticker.push(p.offset);
  $("ticker-value").textContent = String(p.data);
  $("ticks").textContent = String(demo.ticker.length);
});
ticker.on("gap", showGap);
await ticker.ready();
demo.tickerReady = true;

$("send").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  $("text").value = "";
  await client.publish("chat:demo", { text });
});
