#!/usr/bin/env bash
# Each fault's effect, measured by the farm's own load engine against a release farm, checked
# against the figures a user is promised:
#   latency 200 ± 50 ms   -> p50 of 1,000 requests within 190..260 ms (and the spread shows)
#   abort 30 % (seeded)   -> 30 ± 3 % of 5,000 requests fail, the same count on a second server
#   hang                  -> every request of a run ends in a client timeout
#   reset, close          -> every request of a run ends in a connection error
#   throughput 5,000 B/s  -> a 10 KiB body takes about 2 s
#   rate limit 1,000/s    -> 200s at 1,000/s ± 5 % with 2,000/s offered for 10 s
#   health 503            -> the server's status turns within 2 s (ROUNDS times)
# and, for comparison, the same load on a server with no fault. Prints one line per figure
# with PASS or MISS; exits 1 when any misses. Traffic goes to 127.0.0.1 only; every run is
# bounded in requests and time.
#
#   cargo build --release -p farm          # this script builds nothing
#   bench/faults.sh
#   ROUNDS=5 bench/faults.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/farm.sh

BIN=${FARM_BIN:-$(pick_binary target/x86_64-unknown-linux-gnu/release/farm target/release/farm)}
ROUNDS=${ROUNDS:-3}
export FARM_DATA_DIR=$FARM_WORK/data
start_farm "$BIN" --servers 4 --listen 127.0.0.1:0 --gateway-listen 127.0.0.1:0 --node-base-port 0
API=$FARM_GATEWAY_URL/api
echo "faults: $BIN, 4 servers, $(nproc) cores; gateway $FARM_GATEWAY_URL"

missed=0
# verdict NAME OK TEXT: prints the figure and whether it met its target.
verdict() {
    if [[ $2 == 1 ]]; then echo "PASS  $1: $3"; else echo "MISS  $1: $3"; missed=1; fi
}

# set_faults ID JSON / clear_faults ID: the REST surface, failing loudly on a refusal.
set_faults() { curl -fsS -X PUT -H 'content-type: application/json' -d "$2" "$API/servers/$1/faults" >/dev/null; }
clear_faults() { curl -fsS -X DELETE "$API/servers/$1/faults" >/dev/null; }

# load ID ARGS...: a load test on server ID, as JSON. `farm load-test` exits 1 when requests
# failed, which is what most faults are for.
load() {
    local id=$1
    shift
    "$BIN" load-test --controller "$FARM_CONTROLLER_URL" --server-ids "$id" --json "$@" || true
}

field() { python3 -c "import json,sys; r=json.load(sys.stdin); print($1)"; }

echo "== no fault: 1,000 requests, 20 workers"
load 4 --requests 1000 --concurrency 20 | field '"p50 %.2f ms, p99 %.2f ms, %d failures" % (r["latency"]["p50_ms"], r["latency"]["p99_ms"], r["failures"])'

echo "== latency 200 ± 50 ms"
set_faults 1 '{"latency": {"delay_ms": 200, "jitter_ms": 50, "when": {"seed": 1}}}'
read -r p50 p90 p99 < <(load 1 --requests 1000 --concurrency 100 |
    field '"%.1f %.1f %.1f" % (r["latency"]["p50_ms"], r["latency"]["p90_ms"], r["latency"]["p99_ms"])')
ok=$(awk -v p="$p50" 'BEGIN { print (p >= 190 && p <= 260) ? 1 : 0 }')
verdict "latency p50" "$ok" "$p50 ms (target 190..260; p90 $p90 ms, p99 $p99 ms)"
clear_faults 1

echo "== abort 30 % (503:20, 500:5), seed 42"
for id in 1 2; do
    set_faults "$id" '{"abort": {"when": {"percent": 30, "seed": 42}, "statuses": [{"status": 503, "weight": 20}, {"status": 500, "weight": 5}]}}'
done
first=$(load 1 --requests 5000 --concurrency 20 | field '"%d %d" % (r["failures"], r["requests"])')
second=$(load 2 --requests 5000 --concurrency 20 | field '"%d %d" % (r["failures"], r["requests"])')
read -r failed total <<<"$first"
share=$(awk -v f="$failed" -v t="$total" 'BEGIN { printf "%.2f", f / t * 100 }')
ok=$(awk -v s="$share" 'BEGIN { print (s >= 27 && s <= 33) ? 1 : 0 }')
verdict "abort share" "$ok" "$share % of $total failed (target 27..33)"
verdict "abort seed" "$([[ $first == "$second" ]] && echo 1 || echo 0)" "server 1: $first, server 2: $second (failed total; must be equal)"
clear_faults 1
clear_faults 2

echo "== hang, with a 500 ms client timeout"
set_faults 1 '{"hang": {"max_ms": 60000}}'
read -r requests timeouts < <(load 1 --requests 40 --concurrency 10 --timeout-ms 500 |
    field '"%d %d" % (r["requests"], sum(e["count"] for e in r["errors"] if e["kind"] == "timeout"))')
verdict "hang" "$([[ $requests == "$timeouts" && $requests -gt 0 ]] && echo 1 || echo 0)" "$timeouts of $requests timed out"
clear_faults 1

echo "== connection reset"
set_faults 1 '{"connection": {"mode": "reset"}}'
read -r requests errors kinds < <(load 1 --requests 200 --concurrency 10 |
    field '"%d %d %s" % (r["requests"], sum(e["count"] for e in r["errors"]), ",".join(e["kind"] for e in r["errors"]))')
verdict "reset" "$([[ $requests == "$errors" && $requests -gt 0 ]] && echo 1 || echo 0)" "$errors of $requests failed without an answer ($kinds)"
clear_faults 1

echo "== connection close"
set_faults 1 '{"connection": {"mode": "close"}}'
read -r requests errors kinds < <(load 1 --requests 200 --concurrency 10 |
    field '"%d %d %s" % (r["requests"], sum(e["count"] for e in r["errors"]), ",".join(e["kind"] for e in r["errors"]))')
verdict "close" "$([[ $requests == "$errors" && $requests -gt 0 ]] && echo 1 || echo 0)" "$errors of $requests failed without an answer ($kinds)"
clear_faults 1

echo "== throughput 5,000 B/s on a 10 KiB body"
set_faults 1 '{"throughput": {"bytes_per_second": 5000}}'
read -r p50 ok_count < <(load 1 --requests 8 --concurrency 8 --path /data/10 |
    field '"%.0f %d" % (r["latency"]["p50_ms"], r["successes"])')
ok=$(awk -v p="$p50" -v n="$ok_count" 'BEGIN { print (p >= 1900 && p <= 2300 && n == 8) ? 1 : 0 }')
verdict "throughput" "$ok" "p50 $p50 ms for 10,240 bytes (target 1,900..2,300: 2,048 ms at the cap), $ok_count of 8 answered"
clear_faults 1

echo "== rate limit 1,000/s, 2,000/s offered for 10 s"
set_faults 1 '{"rate_limit": {"requests_per_second": 1000}}'
read -r passed limited elapsed < <(load 1 --rate 2000 --concurrency 100 --duration 10 |
    field '"%d %d %.3f" % (sum(s["count"] for s in r["status_codes"] if s["code"] == 200), sum(s["count"] for s in r["status_codes"] if s["code"] == 429), r["elapsed_seconds"])')
rate=$(awk -v p="$passed" -v e="$elapsed" 'BEGIN { printf "%.1f", p / e }')
ok=$(awk -v r="$rate" 'BEGIN { print (r >= 950 && r <= 1050) ? 1 : 0 }')
verdict "rate limit" "$ok" "$rate/s answered 200 (target 950..1050), $limited answered 429, ${elapsed} s"
clear_faults 1

echo "== health 503: time until the farm shows the server degraded"
for round in $(seq 1 "$ROUNDS"); do
    started=$(date +%s%N)
    set_faults 3 '{"health": {"status": 503}}'
    took=
    for _ in $(seq 1 200); do
        status=$(curl -fsS "$API/servers/3" | field 'r["server"]["status"]')
        if [[ $status == degraded ]]; then
            took=$(( ($(date +%s%N) - started) / 1000000 ))
            break
        fi
        sleep 0.02
    done
    verdict "health round $round" "$([[ -n $took && $took -le 2000 ]] && echo 1 || echo 0)" "${took:-never (10 s)} ms (target 2000)"
    clear_faults 3
    for _ in $(seq 1 100); do
        [[ $(curl -fsS "$API/servers/3" | field 'r["server"]["status"]') == healthy ]] && break
        sleep 0.1
    done
done

exit "$missed"
