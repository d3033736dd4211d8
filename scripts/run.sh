#!/usr/bin/env bash
# Builds tokengate (release) and runs it in demo mode at http://127.0.0.1:3000 on SQLite.
# Extra arguments go to tokengate-server (e.g. --config tokengate.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh run
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tokengate-target}"
# target/site (wasm, JS, CSS, assets) and the server, as `cargo leptos build --release` would
# build them, by xtask/ (no cargo-leptos to compile first).
cargo xtask site --release
export TOKENGATE_DEMO="${TOKENGATE_DEMO:-1}"
exec "$CARGO_TARGET_DIR/release/tokengate-server" "$@"
