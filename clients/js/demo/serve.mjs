// Serves the demo page and the built SDK (npm run build first):
//   node demo/serve.mjs                  http://localhost:8000/?ws=ws://localhost:8080/ws
// PORT picks the port. With SWITCHYARD_API (a node's http://host:port) and
// SWITCHYARD_API_KEY, it also publishes a tick on ticker:demo every second
// through the node's HTTP API, as a backend would.
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { extname, join, normalize } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const types = { ".html": "text/html", ".js": "text/javascript", ".map": "application/json", ".css": "text/css" };

/** Starts the static server on `port` (0: any); resolves to the port. */
export function serve(port = 0) {
  const server = createServer(async (req, res) => {
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    const file = path === "/" ? "demo/index.html" : normalize(path).replace(/^\/+/, "");
    const allowed = file.startsWith("demo/") || file.startsWith("dist/") || file === "demo.js";
    const target = file === "demo.js" ? "demo/demo.js" : file;
    try {
      if (!allowed) throw new Error("not here");
      const body = await readFile(join(root, target));
      res.writeHead(200, { "content-type": types[extname(target)] ?? "application/octet-stream" });
      res.end(body);
    } catch {
      res.writeHead(404).end("not found\n");
    }
  });
  return new Promise((done) => server.listen(port, "127.0.0.1", () => done({ server, port: server.address().port })));
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  const { port } = await serve(Number(process.env.PORT ?? 8000));
  console.log(`demo on http://localhost:${port}/?ws=ws://localhost:8080/ws`);
  const api = process.env.SWITCHYARD_API;
  if (api) {
    let n = 0;
    setInterval(() => {
      n++;
      fetch(`${api}/api/publish`, {
        method: "POST",
        headers: { authorization: `apikey ${process.env.SWITCHYARD_API_KEY ?? ""}` },
        body: JSON.stringify({ channel: "ticker:demo", data: n }),
      }).catch((e) => console.warn("tick", n, e.message));
    }, 1000);
  }
}
