#!/usr/bin/env bash
# Idempotent installer for everything tokengate's run and test commands need.
# Usage: scripts/setup.sh [run|test|dev]. Skips whatever is already present.
#   run  (default) the wasm target and npm's wasm-opt: the site is built by `cargo xtask site`
#        (xtask/), which bundles wasm-bindgen, so neither cargo-leptos nor wasm-bindgen-cli is needed.
#   test run's tools plus cargo-nextest, Debian chromium, the Python venv and the end2end npm packages.
#   dev  run's tools plus cargo-leptos 0.3.10 and the matching wasm-bindgen-cli, for the
#        `cargo leptos watch` development loop (compiling them takes ~15 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE="${1:-run}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tokengate-target}"
mkdir -p "$CARGO_TARGET_DIR"

say() { printf '\033[1;32m==>\033[0m %s\n' "$*"; }

rustup target list --installed | grep -q '^wasm32-unknown-unknown$' || {
  say "adding the wasm32 target"; rustup target add wasm32-unknown-unknown; }

if [ "$MODE" = "dev" ]; then
  if ! cargo leptos --version 2>/dev/null | grep -q '0.3.10'; then
    say "installing cargo-leptos 0.3.10"
    cargo install cargo-leptos --version 0.3.10 --locked --features no_downloads
  fi
  WB_VERSION=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/,""); print; exit}' Cargo.lock)
  if ! wasm-bindgen --version 2>/dev/null | grep -q " $WB_VERSION\$"; then
    say "installing wasm-bindgen-cli $WB_VERSION"
    cargo install wasm-bindgen-cli --version "$WB_VERSION" --force
  fi
fi

# Release wasm builds (xtask and cargo-leptos) need wasm-opt; Debian's binaryen breaks hydration, npm's 132 does not.
if [ ! -x node_modules/.bin/wasm-opt ]; then
  say "installing binaryen (wasm-opt) from npm"
  npm install --no-audit --no-fund --silent
fi

if [ "$MODE" = "test" ]; then
  # The test runner (one process per test, per-test time limit); preinstalled on most machines.
  cargo nextest --version >/dev/null 2>&1 || {
    say "installing cargo-nextest"; cargo install cargo-nextest --locked; }
  if [ ! -x /usr/bin/chromium ]; then
    say "installing Debian chromium"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium sqlite3 poppler-utils >/dev/null
  fi
  command -v sqlite3 >/dev/null || {
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq sqlite3 >/dev/null; }
  # pdftotext reads the statement and receipt PDFs back in the billing tests.
  command -v pdftotext >/dev/null || {
    say "installing poppler-utils (pdftotext)"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq poppler-utils >/dev/null; }
  if [ ! -x end2end/.venv/bin/python ]; then
    say "creating the Python venv for the SDK tests"
    python3 -m venv end2end/.venv
  fi
  if ! end2end/.venv/bin/python -c "import openai, pytest" 2>/dev/null || \
     [ end2end/requirements.txt -nt end2end/.venv/.installed ]; then
    end2end/.venv/bin/pip install -q -r end2end/requirements.txt
    touch end2end/.venv/.installed
  fi
  if [ ! -d end2end/node_modules/playwright-core ] || [ ! -f end2end/node_modules/stripe/package.json ] || \
     [ end2end/package.json -nt end2end/node_modules/.package-lock.json ]; then
    say "installing end2end npm packages"
    (cd end2end && npm install --no-audit --no-fund --silent)
  fi
fi
