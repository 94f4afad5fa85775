import js from "@eslint/js";
import tseslint from "typescript-eslint";

const nodeAndBrowser = {
  Buffer: "readonly",
  console: "readonly",
  process: "readonly",
  setTimeout: "readonly",
  clearTimeout: "readonly",
  setInterval: "readonly",
  window: "readonly",
  document: "readonly",
  URL: "readonly",
  URLSearchParams: "readonly",
  fetch: "readonly",
};

export default tseslint.config(
  { ignores: ["dist/", "build/", "src/gen/", "node_modules/"] },
  js.configs.recommended,
  ...tseslint.configs.strict,
  { files: ["**/*.mjs", "**/*.js"], languageOptions: { globals: nodeAndBrowser } },
);
