// The classic Node `ws` broadcast server: the baseline peer.
//   node ws-broadcast.js 127.0.0.1 9200
const { WebSocketServer } = require("ws");
const http = require("http");

const [host, port] = [process.argv[2] || "127.0.0.1", Number(process.argv[3] || 9200)];
const server = http.createServer();
const wss = new WebSocketServer({ server, perMessageDeflate: false });
wss.on("connection", (ws) => {
  ws.on("error", () => {});
  ws.on("message", (data, isBinary) => {
    wss.clients.forEach((c) => {
      if (c !== ws && c.readyState === 1) c.send(data, { binary: isBinary });
    });
  });
});
server.listen(port, host, () => console.error(`ws broadcast on ws://${host}:${port}/`));
