// The classic Node `ws` broadcast server: the baseline peer.
//   node ws-broadcast.js 127.0.0.1 9200
// WS_DEFLATE=1 turns on permessage-deflate for every message (threshold 0),
// with ws's defaults otherwise: each connection compresses what it sends.
const { WebSocketServer } = require("ws");
const http = require("http");

const [host, port] = [process.argv[2] || "127.0.0.1", Number(process.argv[3] || 9200)];
const server = http.createServer();
const perMessageDeflate = process.env.WS_DEFLATE === "1" ? { threshold: 0 } : false;
const wss = new WebSocketServer({ server, perMessageDeflate });
wss.on("connection", (ws) => {
  ws.on("error", () => {});
  ws.on("message", (data, isBinary) => {
    wss.clients.forEach((c) => {
      if (c !== ws && c.readyState === 1) c.send(data, { binary: isBinary });
    });
  });
});
server.listen(port, host, () => console.error(`ws broadcast on ws://${host}:${port}/`));
