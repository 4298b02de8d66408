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
source scripts/lib/farm.sh
FARM_BIN=$(pick_binary target/x86_64-unknown-linux-gnu/release/farm target/release/farm)
BENCH_BIN=$(pick_binary target/x86_64-unknown-linux-gnu/release/examples/bench target/release/examples/bench)
read -r CONTROLLER GATEWAY NODE_BASE < <(free_ports "$SERVERS")
RUST_LOG=warn start_farm "$FARM_BIN" --servers "$SERVERS" \
  --listen "127.0.0.1:$CONTROLLER" \
  --gateway-listen "127.0.0.1:$GATEWAY" \
  --node-base-port "$NODE_BASE"
grep "healthy in" "$FARM_LOG"

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
"$BENCH_BIN" --gateway "http://127.0.0.1:$GATEWAY" --controller "http://127.0.0.1:$CONTROLLER" \
  --clients "$CLIENTS" --seconds "$SECONDS_PER_PHASE"
