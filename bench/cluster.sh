#!/usr/bin/env bash
# Cluster benchmark: the same mock upstream and wrk client against (a) one instance on
# PostgreSQL with its state in memory, (b) one instance with its shared state in Redis
# (cluster mode), (c) three instances with Redis, wrk's connections spread over them.
# Prints req/s and p50/p99 at 1 and 32 connections, the latency cluster mode adds at
# 1 connection (p50, against case a) and the share of case a's req/s it keeps at 32;
# then checks that the balance change equals the sum of logged costs. Not a test: it
# prints figures. Needs PostgreSQL at 127.0.0.1:5432 (trust auth) and Redis at
# 127.0.0.1:6379, as on every machine of this project.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tokengate-target}"
DURATION="${DURATION:-8s}"
PG="${PG:-postgres://postgres@127.0.0.1:5432}"
REDIS="${REDIS:-redis://127.0.0.1:6379}"
command -v wrk >/dev/null || { apt-get install -y -qq wrk >/dev/null || sudo apt-get install -y -qq wrk >/dev/null; }
command -v psql >/dev/null || { apt-get install -y -qq postgresql-client >/dev/null || sudo apt-get install -y -qq postgresql-client >/dev/null; }
# PROFILE=debug runs the script's logic quickly against the debug build (figures are then
# meaningless); the figures that count come from the release build.
PROFILE="${PROFILE:-release}"
if [ "$PROFILE" = release ]; then cargo build --release -p tokengate-server --bin tokengate-server; fi
BIN="$CARGO_TARGET_DIR/$PROFILE/tokengate-server"
WORK=$(mktemp -d)
UP_PORT=19300
DBNAME="tg_bench_cluster_$$"
PREFIX="tgbench$$:"
PIDS=()
stop_all() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done; PIDS=(); }
cleanup() {
  stop_all; kill "${UP_PID:-}" 2>/dev/null || true
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DBNAME" >/dev/null 2>&1 || true
  redis-cli -u "$REDIS" --scan --pattern "${PREFIX}*" 2>/dev/null | xargs -r redis-cli -u "$REDIS" DEL >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
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
TOML
BODY='{"model":"up/fast-1","messages":[{"role":"user","content":"Say hello to the benchmark"}],"max_tokens":16}'
cat > "$WORK/post.lua" <<'LUA'
-- Spreads wrk's threads over the instances in ADDRS (host:port, comma-separated).
local addrs = {}
local n = 0
setup = function(thread)
  if #addrs == 0 then
    for a in string.gmatch(os.getenv("ADDRS"), "[^,]+") do
      local host, port = a:match("([^:]+):(%d+)")
      for _, ad in ipairs(wrk.lookup(host, port)) do table.insert(addrs, ad) end
    end
  end
  thread.addr = addrs[(n % #addrs) + 1]
  n = n + 1
end
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

# start <port> <redis?> [demo]: one instance on the bench database.
start() {
  local port=$1 redis=$2 demo=${3:-0}
  local env=(TOKENGATE_DATABASE_URL="$PG/$DBNAME" TOKENGATE_DATA_DIR="$WORK/data$port"
    TOKENGATE_LISTEN=127.0.0.1:$port TOKENGATE_LOG=warn TOKENGATE_DEMO=$demo
    TOKENGATE_SECRET_KEY=bench-secret-key-0123456789abcdef0123456789)
  [ "$redis" = 1 ] && env+=(TOKENGATE_REDIS_URL="$REDIS" TOKENGATE_REDIS_PREFIX="$PREFIX")
  env "${env[@]}" "$BIN" --config "$WORK/bench.toml" > "$WORK/tg$port.out" 2>"$WORK/tg$port.err" &
  PIDS+=($!)
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && return 0; sleep 0.1; done
  echo "instance on port $port did not start:"; cat "$WORK/tg$port.err"; exit 1
}

psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DBNAME" >/dev/null
psql -q "$PG/postgres" -c "CREATE DATABASE $DBNAME" >/dev/null
start 19301 0 1
KEY=$(awk '/^API key:/{print $3}' "$WORK/tg19301.out")
[ -n "$KEY" ] || { echo "no demo key printed"; cat "$WORK/tg19301.out"; exit 1; }
stop_all
balance0=$(psql -qtA "$PG/$DBNAME" -c "select balance_nano from users where id=1")

printf '%-40s %10s %10s %10s %8s\n' case "req/s" "p50 ms" "p99 ms" errors
declare -A RPS P50
run_case() { # name addrs
  local name=$1 addrs=$2
  for c in 1 32; do
    local t; t=$([ $c = 1 ] && echo 1 || echo 6)
    sleep 2
    out=$(ADDRS="$addrs" KEY="$KEY" BODY="$BODY" wrk -t$t -c$c -d"$DURATION" -s "$WORK/post.lua" "http://${addrs%%,*}/v1/chat/completions" | grep RESULT)
    eval "${out#RESULT }"
    printf '%-40s %10s %10s %10s %8s\n' "$name, $c conn" "$rps" "$p50_ms" "$p99_ms" "$errors"
    RPS[$name$c]=$rps; P50[$name$c]=$p50_ms
  done
}
start 19301 0
run_case "one instance, memory" 127.0.0.1:19301
stop_all
start 19301 1
run_case "one instance, Redis" 127.0.0.1:19301
stop_all
start 19301 1; start 19302 1; start 19303 1
run_case "three instances, Redis" 127.0.0.1:19301,127.0.0.1:19302,127.0.0.1:19303
stop_all

m="one instance, memory"
for name in "one instance, Redis" "three instances, Redis"; do
  awk -v n="$name" -v a="${P50[${name}1]}" -v b="${P50[${m}1]}" -v r="${RPS[${name}32]}" -v s="${RPS[${m}32]}" \
    'BEGIN{printf "%s: added p50 at 1 conn %.3f ms (target <= 0.15); req/s at 32 conn %.0f%% of one instance in memory (target >= 60%%)\n", n, a-b, 100*r/s}'
done
sleep 1
balance=$(psql -qtA "$PG/$DBNAME" -c "select balance_nano from users where id=1")
cost=$(psql -qtA "$PG/$DBNAME" -c "select coalesce(sum(cost_nano),0) from request_logs where user_id=1")
rows=$(psql -qtA "$PG/$DBNAME" -c "select count(*) from request_logs where status=200")
echo "request-log rows (200): $rows; balance change: $((balance0 - balance)) nano-USD; sum of logged costs: $cost nano-USD"
[ "$((balance0 - balance))" = "$cost" ] && echo "balance reconciles with the request log" || echo "MISMATCH between balance and request log"
