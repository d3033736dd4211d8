#!/usr/bin/env bash
# Benchmark: the project's mock upstream (OpenAI-compatible, `tokengate-server
# mock-upstream`) alone and through tokengate (SQLite, funded key, every request
# authenticated, metered and debited), with wrk at 1 and 32 connections; then streaming
# time-to-first-byte (the `ttfb` example client) upstream alone vs through tokengate, and
# an alias whose first tier is a dead provider (fallback, then its open circuit breaker).
# Prints req/s, p50/p99 latency, tokengate's peak RSS, and checks that request-log rows
# and the balance change match. Not a test: it prints figures.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tokengate-target}"
DURATION="${DURATION:-10s}"
command -v wrk >/dev/null || { apt-get install -y -qq wrk >/dev/null || sudo apt-get install -y -qq wrk >/dev/null; }
command -v sqlite3 >/dev/null || { apt-get install -y -qq sqlite3 >/dev/null || sudo apt-get install -y -qq sqlite3 >/dev/null; }
cargo build --release -p tokengate-server --bin tokengate-server --example ttfb
BIN="$CARGO_TARGET_DIR/release/tokengate-server"
TTFB="$CARGO_TARGET_DIR/release/examples/ttfb"
WORK=$(mktemp -d)
UP_PORT=19100; TG_PORT=19200
cleanup() { kill "${UP_PID:-}" "${TG_PID:-}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

"$BIN" mock-upstream --listen 127.0.0.1:$UP_PORT 2>/dev/null & UP_PID=$!
cat > "$WORK/bench.toml" <<TOML
[[providers]]
name = "up"
kind = "openai"
base_url = "http://127.0.0.1:$UP_PORT/v1"

[[models]]
name = "up/fast-1"
provider = "up"
upstream_model = "fast-1"
input_usd_per_m = "0.15"
output_usd_per_m = "0.60"

[[providers]]
name = "dead"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"

[[models]]
name = "dead/fast-1"
provider = "dead"
upstream_model = "fast-1"
input_usd_per_m = "0.15"
output_usd_per_m = "0.60"

[[aliases]]
name = "bench-fallback"
targets = [{ model = "dead/fast-1", priority = 0 }, { model = "up/fast-1", priority = 1 }]
TOML
TOKENGATE_DEMO=1 TOKENGATE_DATA_DIR="$WORK/data" TOKENGATE_LISTEN=127.0.0.1:$TG_PORT TOKENGATE_LOG=warn \
  "$BIN" --config "$WORK/bench.toml" > "$WORK/tg.out" 2>"$WORK/tg.err" & TG_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$TG_PORT/healthz" >/dev/null && break; sleep 0.1; done
KEY=$(awk '/^API key:/{print $3}' "$WORK/tg.out")
DB="$WORK/data/tokengate.db"
BODY='{"model":"fast-1","messages":[{"role":"user","content":"Say hello to the benchmark"}],"max_tokens":16}'
TG_BODY='{"model":"up/fast-1","messages":[{"role":"user","content":"Say hello to the benchmark"}],"max_tokens":16}'
cat > "$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("KEY") or "")
wrk.body = os.getenv("BODY")
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d errors=%d rps=%.0f p50_ms=%.3f p99_ms=%.3f\n",
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
LUA
peak_rss=0
sample_rss() { local r; r=$(awk '/VmHWM/{print $2}' /proc/$TG_PID/status); peak_rss=$r; }
# Each case starts from a quiet machine: queued usage written, sockets settled.
settle() { sleep "${SETTLE:-3}"; }
sent=0
printf '%-34s %10s %10s %10s %8s\n' case "req/s" "p50 ms" "p99 ms" errors
for c in 1 32; do
  t=$([ $c = 1 ] && echo 1 || echo 2)
  settle
  out=$(BODY="$BODY" wrk -t$t -c$c -d"$DURATION" -s "$WORK/post.lua" "http://127.0.0.1:$UP_PORT/v1/chat/completions" | grep RESULT)
  eval "${out#RESULT }"; printf '%-34s %10s %10s %10s %8s\n' "upstream alone, $c conn" "$rps" "$p50_ms" "$p99_ms" "$errors"
  before=$(sqlite3 "$DB" "select balance_nano from users where id=1")
  settle
  out=$(KEY="$KEY" BODY="$TG_BODY" wrk -t$t -c$c -d"$DURATION" -s "$WORK/post.lua" "http://127.0.0.1:$TG_PORT/v1/chat/completions" | grep RESULT)
  eval "${out#RESULT }"; printf '%-34s %10s %10s %10s %8s\n' "through tokengate, $c conn" "$rps" "$p50_ms" "$p99_ms" "$errors"
  sent=$((sent + requests))
done
STREAM_BODY='{"model":"fast-1","stream":true,"messages":[{"role":"user","content":"Say hello to the benchmark"}],"max_tokens":16}'
TG_STREAM_BODY='{"model":"up/fast-1","stream":true,"messages":[{"role":"user","content":"Say hello to the benchmark"}],"max_tokens":16}'
SECS="${DURATION%s}"
printf '\n%-34s %10s %12s %12s %8s\n' "streaming case" "req/s" "ttfb p50 ms" "ttfb p99 ms" errors
for c in 1 32; do
  settle
  out=$("$TTFB" "http://127.0.0.1:$UP_PORT/v1/chat/completions" "$STREAM_BODY" $c "$SECS" | grep RESULT)
  eval "${out#RESULT }"; up_ttfb=$ttfb_p50_ms
  printf '%-34s %10s %12s %12s %8s\n' "upstream alone, $c conn" "$rps" "$ttfb_p50_ms" "$ttfb_p99_ms" "$errors"
  settle
  out=$("$TTFB" "http://127.0.0.1:$TG_PORT/v1/chat/completions" "$TG_STREAM_BODY" $c "$SECS" "$KEY" | grep RESULT)
  eval "${out#RESULT }"
  printf '%-34s %10s %12s %12s %8s\n' "through tokengate, $c conn" "$rps" "$ttfb_p50_ms" "$ttfb_p99_ms" "$errors"
  echo "  added time to first byte (p50), $c conn: $(awk -v a="$ttfb_p50_ms" -v b="$up_ttfb" 'BEGIN{printf "%.3f ms", a-b}')"
  sent=$((sent + requests))
done

FB_BODY='{"model":"bench-fallback","messages":[{"role":"user","content":"Say hello to the benchmark"}],"max_tokens":16}'
printf '\n%-34s %10s %10s %10s %8s\n' "alias with dead first tier" "req/s" "p50 ms" "p99 ms" errors
for c in 1 32; do
  t=$([ $c = 1 ] && echo 1 || echo 2)
  settle
  out=$(KEY="$KEY" BODY="$FB_BODY" wrk -t$t -c$c -d"$DURATION" -s "$WORK/post.lua" "http://127.0.0.1:$TG_PORT/v1/chat/completions" | grep RESULT)
  eval "${out#RESULT }"; printf '%-34s %10s %10s %10s %8s\n' "fallback alias, $c conn" "$rps" "$p50_ms" "$p99_ms" "$errors"
  sent=$((sent + requests))
done
sample_rss
sleep 1
rows=$(sqlite3 "$DB" "select count(*) from request_logs where status=200")
fb=$(sqlite3 "$DB" "select count(*), sum(attempts) from request_logs where model='bench-fallback'")
echo "fallback alias: request-log rows, total attempts (breaker skips included): $fb"
cost=$(sqlite3 "$DB" "select coalesce(sum(cost_nano),0) from request_logs")
balance=$(sqlite3 "$DB" "select balance_nano from users where id=1")
echo "tokengate peak RSS: $((peak_rss / 1024)) MB"
echo "requests completed by wrk: $sent; request-log rows (200): $rows"
echo "balance change: $((5000000000 - balance)) nano-USD; sum of logged costs: $cost nano-USD"
[ "$((5000000000 - balance))" = "$cost" ] && echo "balance reconciles with the request log" || echo "MISMATCH between balance and request log"
