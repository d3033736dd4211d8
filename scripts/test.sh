#!/usr/bin/env bash
# Runs every test of tokengate: format and lint checks, unit tests, integration tests
# against SQLite and PostgreSQL (127.0.0.1:5432, database test), the OpenAI Python SDK
# suite against a live server, and the headless-Chromium hydration check.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tokengate-target}"

step() { printf '\n\033[1;34m### %s\033[0m\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check
step "cargo clippy (ssr workspace, wasm frontend)"
cargo clippy --workspace --exclude tokengate-frontend --all-targets -- -D warnings
cargo clippy -p tokengate-frontend --target wasm32-unknown-unknown -- -D warnings
step "unit and integration tests (SQLite and PostgreSQL)"
cargo test --workspace --exclude tokengate-frontend
# After cargo test: the end-to-end suites need the server binary exactly as cargo-leptos
# builds it (its SSR must match the wasm it hydrates with).
step "build (cargo leptos build: server + wasm)"
cargo leptos build
step "OpenAI Python SDK suite"
TOKENGATE_BIN="$CARGO_TARGET_DIR/debug/tokengate-server" end2end/.venv/bin/python -m pytest -q end2end/tests
step "hydration check in headless Chromium"
TOKENGATE_BIN="$CARGO_TARGET_DIR/debug/tokengate-server" node end2end/hydration.mjs
step "all tests passed"
