#!/usr/bin/env bash
# Runs switchyard's whole test suite on a fresh Debian machine that has only
# the Rust toolchain: installs what the tests need first (cargo-nextest),
# then checks format and lints, then runs every test (unit, integration,
# property, doc). Suites that need Debian packages install them here.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "==> installing cargo-nextest"
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
