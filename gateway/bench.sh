#!/usr/bin/env bash
# The gateway's benchmark: a 50-server farm (release build), then GET /api/servers through
# the gateway and ListServers straight to the controller, 64 concurrent clients each, side
# by side in one run (gateway/examples/bench.rs). Prints a markdown table and whether the
# targets (REST p99 <= 5 ms; gateway adds <= 1 ms at p50) were met.
#
#   gateway/bench.sh                      # SERVERS=50 CLIENTS=64 BENCH_SECONDS=10 by default
#   SKIP_BUILD=1 gateway/bench.sh         # reuse the release binaries already built
set -euo pipefail

cd "$(dirname "$0")/.."

SERVERS=${SERVERS:-50}
CLIENTS=${CLIENTS:-64}
SECONDS_PER_PHASE=${BENCH_SECONDS:-10}

if [[ -z "${SKIP_BUILD:-}" ]]; then
  cargo build --release -p farm
  cargo build --release -p farm-gateway --example bench
fi
pick() {
  for candidate in "$@"; do
    if [[ -x "$candidate" ]]; then echo "$candidate"; return; fi
  done
  echo "bench.sh: none of $* is built" >&2
  exit 2
}
FARM_BIN=$(pick target/x86_64-unknown-linux-gnu/release/farm target/release/farm)
BENCH_BIN=$(pick target/x86_64-unknown-linux-gnu/release/examples/bench target/release/examples/bench)

read -r CONTROLLER GATEWAY NODE_BASE < <(python3 - "$SERVERS" <<'EOF'
import random, socket, sys
def free(port=0):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return s.getsockname()[1]
    except OSError:
        return None
    finally:
        s.close()
n = int(sys.argv[1])
for _ in range(500):
    base = random.randint(20000, 50000)
    if all(free(base + i) for i in range(1, n + 1)):
        break
else:
    sys.exit("no free port range")
print(free(), free(), base)
EOF
)

WORK=$(mktemp -d)
LOG=$WORK/farm.log
FARM_PID=
cleanup() {
  if [[ -n "$FARM_PID" ]] && kill -0 "$FARM_PID" 2>/dev/null; then
    kill -TERM "$FARM_PID" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$FARM_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$FARM_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

RUST_LOG=warn "$FARM_BIN" up --servers "$SERVERS" \
  --listen "127.0.0.1:$CONTROLLER" \
  --gateway-listen "127.0.0.1:$GATEWAY" \
  --node-base-port "$NODE_BASE" >"$LOG" 2>&1 &
FARM_PID=$!
for _ in $(seq 1 600); do
  if grep -q "healthy in" "$LOG"; then break; fi
  if ! kill -0 "$FARM_PID" 2>/dev/null; then cat "$LOG" >&2; exit 1; fi
  sleep 0.1
done
grep "healthy in" "$LOG" || { echo "bench.sh: the farm did not turn healthy" >&2; cat "$LOG" >&2; exit 1; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
"$BENCH_BIN" --gateway "http://127.0.0.1:$GATEWAY" --controller "http://127.0.0.1:$CONTROLLER" \
  --clients "$CLIENTS" --seconds "$SECONDS_PER_PHASE"
