#!/usr/bin/env bash
# The gateway's benchmark: a 50-server farm (release build), then GET /api/servers through
# the gateway and ListServers straight to the controller, 64 concurrent clients each, taking
# turns round after round in one run (controller/examples/gateway_bench.rs). Prints each round with the
# host's CPU steal, the median round and the pooled samples, and whether the targets (REST
# p99 <= 5 ms; gateway adds <= 1 ms at p50) were met.
#
# With nginx installed (apt-get install -y nginx-light), a third path fetches the same JSON,
# saved from the gateway, as a static file from nginx (one worker, sendfile): the floor that
# this machine, with this load generator and these bytes, allows any HTTP server.
#
#   gateway/bench.sh                      # SERVERS=50 CLIENTS=64 ROUNDS=5 BENCH_SECONDS=5 by default
#   SKIP_BUILD=1 gateway/bench.sh         # reuse the release binaries already built
set -euo pipefail

cd "$(dirname "$0")/.."

SERVERS=${SERVERS:-50}
CLIENTS=${CLIENTS:-64}
ROUNDS=${ROUNDS:-5}
SECONDS_PER_PHASE=${BENCH_SECONDS:-5}

if [[ -z "${SKIP_BUILD:-}" ]]; then
  cargo build --release -p farm
  cargo build --release -p farm-controller --example gateway_bench
fi
source scripts/lib/farm.sh
FARM_BIN=$(pick_binary target/x86_64-unknown-linux-gnu/release/farm target/release/farm)
BENCH_BIN=$(pick_binary target/x86_64-unknown-linux-gnu/release/examples/gateway_bench target/release/examples/gateway_bench)
# The controller, the gateway and every node on a port the kernel chooses; start_farm reads
# the controller's and the gateway's from farm up's output.
RUST_LOG=warn start_farm "$FARM_BIN" --servers "$SERVERS" \
  --listen 127.0.0.1:0 \
  --gateway-listen 127.0.0.1:0 \
  --node-base-port 0
grep "healthy in" "$FARM_LOG"

STATIC=()
if command -v nginx >/dev/null; then
  source scripts/lib/nginx.sh
  mkdir -p "$FARM_WORK/nginx/www"
  curl -fsS "$FARM_GATEWAY_URL/api/servers" >"$FARM_WORK/nginx/www/servers.json"
  # nginx's workers drop root's rights: they must be able to read the file.
  chmod a+x "$FARM_WORK" && chmod -R a+rX "$FARM_WORK/nginx/www"
  NGINX_PID=
  trap 'kill "$NGINX_PID" 2>/dev/null || true; stop_farm' EXIT
  # On a random port below the ephemeral range, another if it is taken (nginx cannot say).
  start_nginx "$FARM_WORK/nginx" "" "root $FARM_WORK/nginx/www;"
  STATIC=(--static-url "http://127.0.0.1:$NGINX_PORT/servers.json")
  for _ in $(seq 50); do curl -fsS -o /dev/null "${STATIC[1]}" 2>/dev/null && break; sleep 0.1; done
  curl -fsS -o /dev/null "${STATIC[1]}" || { cat "$FARM_WORK/nginx/error.log" >&2; exit 1; }
else
  echo "nginx is not installed: no static-file reference phase (apt-get install -y nginx-light)"
fi

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
"$BENCH_BIN" --gateway "$FARM_GATEWAY_URL" --controller "$FARM_CONTROLLER_URL" \
  --clients "$CLIENTS" --rounds "$ROUNDS" --seconds "$SECONDS_PER_PHASE" "${STATIC[@]}"
