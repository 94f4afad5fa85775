// Bundles the SDK into dist/ (an ES module, the protobuf codec in a chunk
// of its own that only protobuf clients load), writes its type
// declarations, and compiles the tests into build/.
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";

rmSync("dist", { recursive: true, force: true });
rmSync("build", { recursive: true, force: true });
await build({
  entryPoints: ["src/index.ts"],
  bundle: true,
  splitting: true,
  format: "esm",
  target: "es2022",
  minify: true,
  sourcemap: true,
  outdir: "dist",
  chunkNames: "[name]-[hash]",
  logLevel: "warning",
});
const tsc = "node_modules/typescript/bin/tsc";
execFileSync(
  "node",
  [
    tsc,
    "--emitDeclarationOnly",
    "--outDir",
    "dist",
    "--rootDir",
    "src",
    "src/index.ts",
    "--declaration",
    "--module",
    "ES2022",
    "--moduleResolution",
    "Bundler",
    "--target",
    "ES2022",
    "--strict",
    "--skipLibCheck",
    "--lib",
    "ES2022,DOM",
  ],
  { stdio: "inherit" },
);
execFileSync("node", [tsc, "--outDir", "build"], { stdio: "inherit" });
