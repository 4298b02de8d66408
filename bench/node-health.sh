#!/usr/bin/env bash
# Throughput of one node app's GET /health against nginx answering the same JSON, on one core each.
#
#   apt-get install -y wrk nginx-light     # once (wrk, nginx; taskset and curl are in util-linux, curl)
#   cargo build --release -p farm          # this script builds nothing
#   bench/node-health.sh
#
# The node (`farm node --id 1`) and nginx (worker_processes 1) are both pinned to core 0 and wrk to
# core 1 (`taskset -c 1 wrk -t1 -c64 -d10s`, keepalive). The two servers run side by side and are
# measured alternately, ROUNDS times each; the script prints requests/s per round, the median of
# each, and the ratio ours/nginx. nginx's keepalive_requests is raised so that neither side closes
# connections during a run. Traffic goes to 127.0.0.1 only; everything started is killed on exit.
# The node listens on a port the kernel chooses and says which ("farm node: listening on ...");
# nginx, which cannot say, on a random port below the kernel's ephemeral range (32768-60999),
# and on another when that one is taken.
#
# Settings (environment): FARM_BIN (target/x86_64-unknown-linux-gnu/release/farm, else
# target/release/farm), NODE_PORT (0: the kernel's choice), NGINX_PORT (unset: a random free port
# below 32768), ROUNDS (3), DURATION (10s), CONNECTIONS (64), SERVER_CORE (0), CLIENT_CORE (1),
# ROUTES (unset; e.g. "/ /metrics" also measures those routes of the node against its /health).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# .cargo/config.toml names the build target, so release builds land in target/<triple>/release.
if [[ -z ${FARM_BIN:-} ]]; then
    for FARM_BIN in "$ROOT/target/x86_64-unknown-linux-gnu/release/farm" "$ROOT/target/release/farm"; do
        [[ -x $FARM_BIN ]] && break
    done
fi
NODE_PORT=${NODE_PORT:-0}
NGINX_PORT=${NGINX_PORT:-}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
SERVER_CORE=${SERVER_CORE:-0}
CLIENT_CORE=${CLIENT_CORE:-1}

die() { echo "node-health: $*" >&2; exit 1; }
source "$ROOT/scripts/lib/nginx.sh"

[[ -x $FARM_BIN ]] || die "$FARM_BIN not found; build it first: cargo build --release -p farm"
for tool in wrk nginx taskset curl; do
    command -v "$tool" >/dev/null || die "$tool is missing; install it: apt-get install -y wrk nginx-light util-linux curl"
done
# Ports asked for by name must be free; the others are chosen where nothing can hold them.
for port in "$NODE_PORT" "$NGINX_PORT"; do
    if [[ -n $port && $port != 0 ]] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port is already in use; set NODE_PORT / NGINX_PORT"
    fi
done

WORK=$(mktemp -d -t farm-bench-node.XXXXXX)
NODE_PID=
NGINX_PID=
cleanup() {
    local pid
    for pid in $NODE_PID $NGINX_PID; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in $NODE_PID $NGINX_PID; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_up URL: wait up to 10 s for URL to answer 200.
wait_up() {
    local i
    for i in $(seq 200); do
        curl -fsS --max-time 1 -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    die "$1 did not answer within 10 s"
}

# --- the node app, which says where it listens
taskset -c "$SERVER_CORE" "$FARM_BIN" node --id 1 --listen "127.0.0.1:$NODE_PORT" \
    >"$WORK/node.log" 2>&1 &
NODE_PID=$!
line=$(wait_line "$WORK/node.log" '^farm node: listening on ' "$NODE_PID" 10 "farm node") ||
    die "the node did not start"
NODE_ADDRESS=$(address_after "$line" "listening on ") || die "no address in: $line"

# --- nginx, answering the same JSON; sets NGINX_PORT
start_nginx "$WORK/nginx" "$NGINX_PORT" "return 200 '{\"status\":\"healthy\",\"server_id\":1}';" \
    taskset -c "$SERVER_CORE" || die "nginx did not start"

NODE_URL="http://$NODE_ADDRESS/health"
NGINX_URL="http://127.0.0.1:$NGINX_PORT/health"
wait_up "$NODE_URL"
wait_up "$NGINX_URL"

echo "node-health: $(nproc) cores; servers on core $SERVER_CORE, wrk on core $CLIENT_CORE"
echo "  farm node : $FARM_BIN (built $(date -r "$FARM_BIN" "+%F %T"))  ->  $(curl -fsS "$NODE_URL")"
echo "  nginx     : $(nginx -v 2>&1 | sed 's/^nginx version: //')  ->  $(curl -fsS "$NGINX_URL")"
echo "  wrk       : $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}') -t1 -c$CONNECTIONS -d$DURATION, $ROUNDS rounds each, alternating"
echo

dur_s=${DURATION%s}
# run_wrk NAME URL: one wrk run; prints one line and appends requests/s to $WORK/NAME.rps
run_wrk() {
    local name=$1 url=$2 out rps p50 p99 errs non2xx
    out=$(timeout $((dur_s + 30)) taskset -c "$CLIENT_CORE" \
        wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "$url" 2>&1) ||
        die "wrk failed against $url: $out"
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    errs=$(grep -E '^ *Socket errors' <<<"$out" | sed 's/^ *//' || true)
    non2xx=$(grep -E 'Non-2xx' <<<"$out" | sed 's/^ *//' || true)
    [[ -n $rps ]] || die "no Requests/sec in wrk output: $out"
    echo "$rps" >>"$WORK/$name.rps"
    printf '  round %d  %-6s %12.0f req/s   p50 %-8s p99 %-8s %s %s\n' \
        "$round" "$name" "$rps" "$p50" "$p99" "$errs" "$non2xx"
}

for round in $(seq "$ROUNDS"); do
    run_wrk node "$NODE_URL"
    run_wrk nginx "$NGINX_URL"
done

median() { sort -g "$1" | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
node_med=$(median "$WORK/node.rps")
nginx_med=$(median "$WORK/nginx.rps")
echo
awk -v a="$node_med" -v b="$nginx_med" 'BEGIN {
    printf "median requests/s: farm node %.0f, nginx %.0f; ours/nginx = %.2f\n", a, b, a / b
}'

# --- the node's other routes against its own /health (ROUTES="/ /metrics" to measure them)
if [[ -n ${ROUTES:-} ]]; then
    echo
    echo "the node's routes against its own /health (same settings, alternating):"
    for round in $(seq "$ROUNDS"); do
        run_wrk health "$NODE_URL"
        for route in $ROUTES; do
            run_wrk "route$(tr '/' '_' <<<"$route")" "http://$NODE_ADDRESS$route"
        done
    done
    health_med=$(median "$WORK/health.rps")
    for route in $ROUTES; do
        route_med=$(median "$WORK/route$(tr '/' '_' <<<"$route").rps")
        awk -v r="$route" -v a="$route_med" -v b="$health_med" 'BEGIN {
            printf "  %-9s median %.0f req/s = %.2fx of /health (%.0f)\n", r, a, a / b, b
        }'
    done
fi
