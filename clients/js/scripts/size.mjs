// The size of the JSON-only bundle as an application ships it: dist/index.js
// and the chunks it imports statically (the protobuf chunk is loaded only
// with `encoding: "protobuf"`), minified and gzipped together. Fails above
// the budget.
import { readFileSync, readdirSync } from "node:fs";
import { gzipSync } from "node:zlib";

const BUDGET = 15 * 1024;
const files = ["index.js", ...readdirSync("dist").filter((f) => f.startsWith("chunk-") && f.endsWith(".js"))];
const bytes = Buffer.concat(files.map((f) => readFileSync(`dist/${f}`)));
const gzipped = gzipSync(bytes, { level: 9 }).length;
console.log(
  `JSON-only bundle (${files.join(", ")}): ${bytes.length} bytes minified, ${gzipped} bytes gzipped (budget ${BUDGET})`,
);
if (gzipped > BUDGET) process.exit(1);
