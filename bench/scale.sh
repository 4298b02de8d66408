#!/usr/bin/env bash
# Scaling a farm far up and back down, and the controller's API meanwhile.
#
#   cargo build --release -p farm            # this script builds nothing
#   bench/scale.sh                           # release build, 50 -> 1000 -> 50
#   FARM_BIN=target/x86_64-unknown-linux-gnu/debug/farm bench/scale.sh   # the debug build
#
# 1. Starts `farm up --servers FROM` (process runtime, every port picked by the kernel).
# 2. Asks the gateway to scale to TO (`POST /api/scale`) and waits until TO servers are
#    healthy (at most UP_TIMEOUT_S), then back to FROM (at most DOWN_TIMEOUT_S).
# 3. All along, a prober asks `GET /api/health` (which probes every server's /health) every
#    PROBE_EVERY_S, each with a 10 s bound, and `GET /api/metrics` as often: both must keep
#    answering while the farm scales. It prints the count, the failures and the p50 / p99 /
#    max latency of each, for the whole run.
# Traffic goes to 127.0.0.1 only, and every loop is bounded in time.
#
# Settings (environment): FARM_BIN (target/x86_64-unknown-linux-gnu/release/farm, else
# target/release/farm), FROM (50), TO (1000), UP_TIMEOUT_S (300), DOWN_TIMEOUT_S (120),
# PROBE_EVERY_S (0.5).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
source scripts/lib/farm.sh

FARM_BIN=${FARM_BIN:-$(pick_binary target/x86_64-unknown-linux-gnu/release/farm target/release/farm)}
FROM=${FROM:-50}
TO=${TO:-1000}
UP_TIMEOUT_S=${UP_TIMEOUT_S:-300}
DOWN_TIMEOUT_S=${DOWN_TIMEOUT_S:-120}
PROBE_EVERY_S=${PROBE_EVERY_S:-0.5}

export FARM_DATA_DIR=$FARM_WORK/data
start_farm "$FARM_BIN" --servers "$FROM" --listen 127.0.0.1:0 --gateway-listen 127.0.0.1:0 \
    --node-base-port 0 --max-servers "$TO"
echo "farm-scale: $FARM_BIN, $FROM -> $TO -> $FROM servers, gateway $FARM_GATEWAY_URL"

# healthy_count: servers healthy now, per the gateway (empty when it does not answer).
healthy_count() {
    curl -s --max-time 10 "$FARM_GATEWAY_URL/api/servers?status=healthy" |
        python3 -c 'import json,sys; print(len(json.load(sys.stdin)["servers"]))' 2>/dev/null || true
}

# total_count: servers in the farm now.
total_count() {
    curl -s --max-time 10 "$FARM_GATEWAY_URL/api/servers" |
        python3 -c 'import json,sys; print(len(json.load(sys.stdin)["servers"]))' 2>/dev/null || true
}

# probe PATH FILE: until the file $FARM_WORK/stop exists, GETs PATH every PROBE_EVERY_S and
# appends "<status> <seconds>" per request to FILE.
probe() {
    while [[ ! -e $FARM_WORK/stop ]]; do
        curl -s -o /dev/null --max-time 10 -w '%{http_code} %{time_total}\n' \
            "$FARM_GATEWAY_URL$1" >>"$2" || echo "000 10" >>"$2"
        sleep "$PROBE_EVERY_S"
    done
}
probe "/api/health" "$FARM_WORK/health.txt" &
HEALTH_PROBE=$!
probe "/api/metrics" "$FARM_WORK/metrics.txt" &
METRICS_PROBE=$!

# scale_to N TIMEOUT: asks for N servers and waits until N are healthy; prints the time.
scale_to() {
    local n=$1 timeout=$2 started now healthy total
    started=$(date +%s%N)
    curl -s --max-time 60 -X POST "$FARM_GATEWAY_URL/api/scale" \
        -H 'content-type: application/json' -d "{\"servers\": $n}" >/dev/null
    while true; do
        healthy=$(healthy_count)
        total=$(total_count)
        now=$(date +%s%N)
        if [[ $healthy == "$n" && $total == "$n" ]]; then
            echo "farm-scale: $n servers healthy $(((now - started) / 1000000)) ms after asking"
            return 0
        fi
        if (((now - started) / 1000000000 > timeout)); then
            printf 'farm-scale: MISSED: %s of %s healthy (%s in the farm) after %s s\n' \
                "${healthy:-?}" "$n" "${total:-?}" "$timeout"
            return 1
        fi
        sleep 1
    done
}

outcome=0
scale_to "$TO" "$UP_TIMEOUT_S" || outcome=1
scale_to "$FROM" "$DOWN_TIMEOUT_S" || outcome=1
touch "$FARM_WORK/stop"
wait "$HEALTH_PROBE" "$METRICS_PROBE"

# summary NAME FILE: count, failures, p50 / p99 / max of the probes in FILE.
summary() {
    python3 - "$1" "$2" <<'EOF'
import sys
name, path = sys.argv[1], sys.argv[2]
rows = [line.split() for line in open(path) if line.strip()]
times = sorted(float(t) * 1000 for _, t in rows)
failed = sum(1 for code, _ in rows if code != "200")
def pct(p):
    return times[min(len(times) - 1, int(p / 100 * len(times)))]
print(f"farm-scale: {name}: {len(rows)} requests, {failed} failed; "
      f"p50 {pct(50):.1f} ms, p99 {pct(99):.1f} ms, max {times[-1]:.1f} ms")
EOF
}
summary "GET /api/health" "$FARM_WORK/health.txt"
summary "GET /api/metrics" "$FARM_WORK/metrics.txt"
exit "$outcome"
