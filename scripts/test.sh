#!/usr/bin/env bash
# Runs every test of tokengate: format and lint checks, unit tests, integration tests
# against SQLite and PostgreSQL (127.0.0.1:5432, database test), the OpenAI Python SDK
# and Anthropic Python SDK suites and the OIDC sign-in suite against live servers, and the
# headless-Chromium checks (hydration, sign-in, API explorer and docs, portal and admin console).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tokengate-target}"
# The PostgreSQL cases of the Rust suites run (they are skipped when this is unset).
export TOKENGATE_TEST_PG="${TOKENGATE_TEST_PG:-postgres://postgres@127.0.0.1:5432/test}"

step() { printf '\n\033[1;34m### %s\033[0m\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check
step "cargo clippy (ssr workspace, wasm frontend)"
cargo clippy --workspace --exclude tokengate-frontend --all-targets -- -D warnings
cargo clippy -p tokengate-frontend --target wasm32-unknown-unknown -- -D warnings
step "unit and integration tests (SQLite and PostgreSQL)"
# cli/tests run the tokengate-server binary this same command builds: server/ has
# integration tests, so cargo builds its binary before it runs any test.
# cargo-nextest (.config/nextest.toml): one process per test, a stalled test is killed
# after 240 s and reported instead of stalling the run.
cargo nextest run --workspace --exclude tokengate-frontend
# After cargo test: the end-to-end suites need the server binary and target/site built
# together (its SSR must match the wasm it hydrates with): xtask/ builds both exactly as
# `cargo leptos build` does, without cargo-leptos.
step "build (cargo xtask site: server + wasm)"
cargo xtask site
step "Python suites: OpenAI and Anthropic SDKs, translation, embeddings, faults, OIDC sign-in"
TOKENGATE_BIN="$CARGO_TARGET_DIR/debug/tokengate-server" end2end/.venv/bin/python -m pytest -q end2end/tests
step "hydration check in headless Chromium"
TOKENGATE_BIN="$CARGO_TARGET_DIR/debug/tokengate-server" node end2end/hydration.mjs
step "sign-in in headless Chromium (OIDC against oidc-provider, device approval, no-JS form)"
TOKENGATE_BIN="$CARGO_TARGET_DIR/debug/tokengate-server" node end2end/signin.mjs
step "API explorer and docs pages in headless Chromium (nothing loaded from other hosts, try it out)"
TOKENGATE_BIN="$CARGO_TARGET_DIR/debug/tokengate-server" node end2end/docs.mjs
step "portal and admin console in headless Chromium (customer and admin journeys, no-JS forms, top-up, screenshots)"
TOKENGATE_BIN="$CARGO_TARGET_DIR/debug/tokengate-server" node end2end/portal.mjs
step "all tests passed"
