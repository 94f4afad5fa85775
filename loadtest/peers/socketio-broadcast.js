// Socket.IO with the Redis adapter: the cluster peer. Every process runs
// this on its own port over the same Redis; a `publish` event from any
// client goes to every other client on every process, a `publish_to` event
// to the clients in one room; a `presence` event is answered with the
// sockets of a room on every process (`fetchSockets`).
//   node socketio-broadcast.js 127.0.0.1 9300 redis://127.0.0.1:6379
const http = require("http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const [host, port, redisUrl] = [process.argv[2] || "127.0.0.1", Number(process.argv[3] || 9300), process.argv[4]];
// Engine.IO heartbeat: every PING_INTERVAL ms (the load generator answers).
const pingInterval = Number(process.env.PING_INTERVAL_MS || 25000);

async function main() {
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  pub.on("error", (e) => console.error("redis", e.message));
  sub.on("error", (e) => console.error("redis", e.message));
  await Promise.all([pub.connect(), sub.connect()]);
  const server = http.createServer();
  const io = new Server(server, {
    adapter: createAdapter(pub, sub),
    transports: ["websocket"],
    perMessageDeflate: false,
    pingInterval,
    serveClient: false,
  });
  io.on("connection", (socket) => {
    socket.on("error", () => {});
    socket.on("publish", (m) => socket.broadcast.emit("m", m));
    // Channels as rooms (the many-channels scenario): join with an ack,
    // publish to one room.
    socket.on("join", (rooms, ack) => {
      socket.join(rooms);
      if (typeof ack === "function") ack();
    });
    socket.on("publish_to", (room, m) => io.to(room).emit("m", m));
    // Who is in a room, on every process (the presence scenario): the
    // adapter asks the other processes through Redis and waits for them.
    socket.on("presence", async (room, ack) => {
      const sockets = await io.in(room).fetchSockets();
      if (typeof ack === "function") ack(sockets.map((s) => ({ id: s.id, data: s.data })));
    });
  });
  // Bound to one address: `io.listen(port)` would take every interface.
  server.listen(port, host, () => console.error(`socket.io on ws://${host}:${port}/socket.io/`));
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
