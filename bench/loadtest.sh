#!/usr/bin/env bash
# The load-test engine against wrk, in one run, same target, same connections:
#   1. closed model, 64 connections, 10 s, GET /health on one node: our requests/s against
#      wrk's (target: at least 0.8x);
#   2. open model at constant rates: the achieved rate against the rate asked for (target:
#      within 1 %).
# The node (with its agent) is pinned to core 0; the load generators to core 1: wrk, or the
# controller, whose engine sends the load (`farm load-test` only starts it and prints).
# Alternating, ROUNDS times each. Traffic goes to 127.0.0.1 only. The controller and the node
# listen on ports the kernel chooses: the controller says its own, and knows the node's.
#
#   apt-get install -y wrk                 # once
#   cargo build --release -p farm          # this script builds nothing
#   bench/loadtest.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/farm.sh

BIN=$(pick_binary target/x86_64-unknown-linux-gnu/release/farm target/release/farm)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
RATES=${RATES:-"1000 5000 20000"}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 2; }

PIDS=()
cleanup_all() { for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; stop_farm; }
trap cleanup_all EXIT

RUST_LOG=warn taskset -c 1 "$BIN" controller --listen 127.0.0.1:0 >"$FARM_WORK/controller.log" 2>&1 &
PIDS+=($!)
line=$(wait_line "$FARM_WORK/controller.log" '^farm: controller listening on ' "${PIDS[0]}" 20 "farm controller")
CONTROLLER="http://$(address_after "$line" "listening on ")"
RUST_LOG=warn taskset -c 0 "$BIN" agent --id 1 --controller "$CONTROLLER" --node-listen 127.0.0.1:0 >"$FARM_WORK/agent.log" 2>&1 &
PIDS+=($!)
NODE=
for _ in $(seq 1 100); do
    if "$BIN" health --controller "$CONTROLLER" >/dev/null 2>&1 && NODE=$(node_address "$BIN" "$CONTROLLER" 1) &&
        curl -fsS "http://$NODE/health" >/dev/null 2>&1; then
        break
    fi
    NODE=
    sleep 0.1
done
if [[ -z $NODE ]]; then
    echo "server 1 did not turn healthy within 10 s:" >&2
    cat "$FARM_WORK/controller.log" "$FARM_WORK/agent.log" >&2
    exit 1
fi

ours() {
    "$BIN" load-test --controller "$CONTROLLER" --server-ids 1 --path /health --json "$@" |
        python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["requests_per_second"], r["requests"], r["elapsed_seconds"], r["latency"]["p50_ms"], r["latency"]["p99_ms"], r["failures"])'
}

echo "== closed model: $CONNECTIONS connections, ${DURATION} s, GET http://$NODE/health; $(nproc) cores"
for round in $(seq 1 "$ROUNDS"); do
    wrk_rps=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "http://$NODE/health" | awk '/^Requests\/sec/ {print $2}')
    read -r our_rps _ _ p50 p99 failures < <(ours --concurrency "$CONNECTIONS" --duration "$DURATION")
    awk -v w="$wrk_rps" -v o="$our_rps" -v r="$round" -v p50="$p50" -v p99="$p99" -v f="$failures" \
        'BEGIN { printf "round %d: wrk %.0f req/s, farm load-test %.0f req/s (p50 %.2f ms, p99 %.2f ms, %d failed), ratio %.2fx\n", r, w, o, p50, p99, f, o / w }'
done

echo "== open model: constant rate, $CONNECTIONS in flight at most, ${DURATION} s"
for rate in $RATES; do
    read -r achieved requests elapsed p50 p99 failures < <(ours --rate "$rate" --concurrency "$CONNECTIONS" --duration "$DURATION")
    awk -v a="$achieved" -v r="$rate" -v n="$requests" -v e="$elapsed" -v p99="$p99" \
        'BEGIN { printf "rate %d/s: %d requests in %.2f s = %.1f req/s, off by %+.2f %% (corrected p99 %.2f ms)\n", r, n, e, a, (a - r) / r * 100, p99 }'
done
