#!/usr/bin/env bash
# Benchmarks of the docker runtime, side by side in one run:
#   1. `farm up --runtime docker` with N servers, image present, until all are healthy,
#      against the engine's own floor: the same API calls (create, then start) at the same
#      concurrency, with the same network, limits and published ports, for N containers of
#      the same image that only idle (controller/examples/engine_floor.rs). Alternating,
#      ROUNDS times each.
#   2. Memory per server container (`docker stats`), and the host's memory for the whole
#      farm: MemAvailable before `farm up` and after the farm is healthy, so the engine's
#      shims and port proxies count.
# Traffic: none beyond the engine's socket and the farm's own containers.
# Ports: the controller and the gateway listen on ports the kernel chooses (port 0). Docker
# publishes node N on BASE_PORT+N, and cannot say which port it got: the base is chosen at
# random below the kernel's ephemeral range (32768-60999), and another is tried when farm up
# finds one of those ports taken. Settings (environment): BIN, FLOOR, SERVERS, ROUNDS,
# CONTROLLER_PORT (0), GATEWAY_PORT (0), BASE_PORT (unset: chosen as above), FLOOR_BASE_PORT
# (18400; engine_floor publishes its containers on FLOOR_BASE_PORT+N).
#
# Build first:
#   cargo build --release -p farm && cargo build --release -p farm-controller --example engine_floor
# Run:  bench/docker.sh            (SERVERS=50 ROUNDS=3 by default)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/ports.sh

BIN=${BIN:-target/x86_64-unknown-linux-gnu/release/farm}
FLOOR=${FLOOR:-target/x86_64-unknown-linux-gnu/release/examples/engine_floor}
SERVERS=${SERVERS:-50}
ROUNDS=${ROUNDS:-3}
CONCURRENCY=8
PREFIX="bench$$"
CONTROLLER_PORT=${CONTROLLER_PORT:-0}
GATEWAY_PORT=${GATEWAY_PORT:-0}
BASE_PORT=${BASE_PORT:-}
FLOOR_BASE_PORT=${FLOOR_BASE_PORT:-18400}

for f in "$BIN" "$FLOOR"; do
    [[ -x $f ]] || { echo "missing $f; build it first (see the header of this script)" >&2; exit 1; }
done
docker info >/dev/null 2>&1 || { echo "no Docker engine answers; start dockerd" >&2; exit 1; }

FARM_PID=
cleanup() {
    [[ -n $FARM_PID ]] && kill -TERM "$FARM_PID" 2>/dev/null && wait "$FARM_PID" 2>/dev/null || true
    "$BIN" down --name-prefix "$PREFIX" >/dev/null 2>&1 || true
}
trap cleanup EXIT

available_kib() { awk '/^MemAvailable:/ {print $2}' /proc/meminfo; }

# Starts the farm and waits for its "healthy in X s" line; sets HEALTHY_IN to X. Node N is
# published on BASE_PORT+N if BASE_PORT is set, else on BASE+N for a BASE chosen at random
# below 32768, and another (5 attempts) when farm up fails because a port is taken. (Not run
# in a subshell: FARM_PID must stay set for farm_down.)
farm_up() {
    local log=$1 attempt attempts=5 base
    [[ -z $BASE_PORT ]] || attempts=1
    for ((attempt = 1; attempt <= attempts; attempt++)); do
        base=${BASE_PORT:-$(low_port "$SERVERS")}
        "$BIN" up --runtime docker --servers "$SERVERS" --name-prefix "$PREFIX" \
            --listen "127.0.0.1:$CONTROLLER_PORT" --gateway-listen "127.0.0.1:$GATEWAY_PORT" \
            --node-base-port "$base" --docker-concurrency "$CONCURRENCY" >"$log" 2>&1 &
        FARM_PID=$!
        for _ in $(seq 1 1200); do
            if grep -q "healthy in" "$log"; then
                HEALTHY_IN=$(sed -n 's/.*healthy in \([0-9.]*\) s.*/\1/p' "$log")
                return 0
            fi
            kill -0 "$FARM_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$FARM_PID" 2>/dev/null; then
            echo "farm did not turn healthy within 120 s" >&2
            cat "$log" >&2
            return 1
        fi
        wait "$FARM_PID" 2>/dev/null || true
        FARM_PID=
        if ! grep -qiE "is not free|already allocated|address already in use" "$log"; then
            cat "$log" >&2
            return 1
        fi
        echo "a node port in $((base + 1))-$((base + SERVERS)) is taken" >&2
        "$BIN" down --name-prefix "$PREFIX" >/dev/null 2>&1 || true
    done
    echo "farm up found no free node ports in $attempts attempt(s):" >&2
    cat "$log" >&2
    return 1
}

farm_down() {
    kill -TERM "$FARM_PID"
    wait "$FARM_PID" || true
    FARM_PID=
}

LOG=$(mktemp)
echo "== warm-up: build the image if missing"
farm_up "$LOG"
IMAGE=$(docker inspect --format '{{.Config.Image}}' "$PREFIX-server-1")
farm_down
echo "image: $IMAGE; $SERVERS servers; concurrency $CONCURRENCY; $(nproc) cores"

echo "== time to $SERVERS running containers: engine floor vs farm (until all healthy)"
for round in $(seq 1 "$ROUNDS"); do
    floor=$("$FLOOR" "$IMAGE" "$SERVERS" "$CONCURRENCY" "$FLOOR_BASE_PORT" | sed -n 's/.* in \([0-9.]*\) s.*/\1/p')
    farm_up "$LOG"
    farm=$HEALTHY_IN
    farm_down
    ratio=$(awk -v a="$farm" -v b="$floor" 'BEGIN { printf "%.2f", a / b }')
    echo "round $round: engine floor ${floor} s, farm healthy ${farm} s, ratio ${ratio}x"
done

echo "== memory with $SERVERS servers running"
sync
before=$(available_kib)
farm_up "$LOG"
sleep 10
after=$(available_kib)
docker stats --no-stream --format '{{.Name}} {{.MemUsage}}' | grep "^$PREFIX-server-" |
    awk '{ v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[A-Za-z]+/, "", v);
           f = (u == "GiB") ? 1024 : (u == "MiB") ? 1 : (u == "KiB") ? 1 / 1024 : 1 / 1048576;
           m = v * f; s += m; if (m > max) max = m; n++ }
         END { printf "per server container (docker stats): mean %.2f MiB, max %.2f MiB over %d containers\n", s / n, max, n }'
awk -v b="$before" -v a="$after" -v n="$SERVERS" \
    'BEGIN { d = (b - a) / 1024; printf "host memory for the farm (MemAvailable before - after): %.0f MiB (%.1f MiB per server)\n", d, d / n }'
farm_down
