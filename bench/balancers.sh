#!/usr/bin/env bash
# Load balancers from Debian in front of a release farm, measured by the farm's own load
# engine through each (a run through a front, answers attributed by `x-farm-server`):
#   shares       -> per-server shares of 20,000 requests (16 keep-alive connections):
#                   largest over smallest, largest deviation from an equal share
#   kill         -> server 3 SIGKILLed at 2 s under 400 req/s, held down 3 s, started again:
#                   requests failed, when errors stopped (failover), re-admission time
#   health       -> server 4's /health answers 503 at 2 s for 3 s while it serves: detection
#                   (its last answer after the fault) and re-admission time
# for haproxy (active checks every 200 ms, fall 2, rise 2) and nginx (passive checks), both
# from `farm lb config`. ROUNDS rounds of each drill; prints one line per figure.
# Traffic goes to 127.0.0.1 only; every run is bounded in requests and time.
#
#   cargo build --release -p farm          # this script builds nothing
#   bench/balancers.sh
#   ROUNDS=5 BALANCERS="haproxy" bench/balancers.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/farm.sh

BIN=${FARM_BIN:-$(pick_binary target/x86_64-unknown-linux-gnu/release/farm target/release/farm)}
ROUNDS=${ROUNDS:-3}
BALANCERS=${BALANCERS:-haproxy nginx}
SERVERS=10
for balancer in $BALANCERS; do
    command -v "$balancer" >/dev/null ||
        { echo "balancers: $balancer is not installed (apt-get install $balancer)" >&2; exit 2; }
done
export FARM_DATA_DIR=$FARM_WORK/data
start_farm "$BIN" --servers "$SERVERS" --listen 127.0.0.1:0 --gateway-listen 127.0.0.1:0 --node-base-port 0
echo "balancers: $BIN, $SERVERS servers, $(nproc) cores; $(haproxy -v 2>/dev/null | head -1 || true); $(nginx -v 2>&1)"

BALANCER_PID=
stop_balancer() {
    if [[ -n $BALANCER_PID ]]; then
        kill -TERM "$BALANCER_PID" 2>/dev/null || true
        wait "$BALANCER_PID" 2>/dev/null || true
        BALANCER_PID=
    fi
}
trap 'stop_balancer; stop_farm' EXIT

# start_balancer KIND: generates its config on a free low port and starts it in the
# foreground (in the background of this script); sets FRONT. Retries a taken port.
start_balancer() {
    local kind=$1 port config attempt
    for attempt in 1 2 3 4 5; do
        port=$(low_port)
        config=$FARM_WORK/$kind-$port.conf
        "$BIN" lb config "$kind" --controller "$FARM_CONTROLLER_URL" --listen "127.0.0.1:$port" \
            --check-interval-ms 200 --fall 2 --rise 2 --out "$config" >/dev/null
        case $kind in
            haproxy) haproxy -W -f "$config" 2>"$config.stderr" & ;;
            nginx) nginx -c "$config" -g 'daemon off;' 2>"$config.stderr" & ;;
        esac
        BALANCER_PID=$!
        for _ in $(seq 1 50); do
            if curl -fsS -o /dev/null "http://127.0.0.1:$port/health" 2>/dev/null; then
                FRONT=http://127.0.0.1:$port
                sleep 1 # every server's first checks
                return 0
            fi
            kill -0 "$BALANCER_PID" 2>/dev/null || break
            sleep 0.1
        done
        stop_balancer
        echo "balancers: $kind did not answer on port $port (attempt $attempt): $(tail -3 "$config.stderr")" >&2
    done
    return 1
}

# through ARGS...: `farm load-test --front $FRONT ARGS --json`; it exits 1 when requests
# failed, which a drill may cause.
through() {
    "$BIN" load-test --controller "$FARM_CONTROLLER_URL" --front "$FRONT" --json "$@" || true
}

# The figures of a run's JSON (on standard input), one line each.
SHARES_PY=$(cat <<'EOF'
import json, sys
kind = sys.argv[1]
f = json.load(sys.stdin)["front"]
counts = " ".join(f"{b['server_id']}:{b['requests']}" for b in f["backends"])
print(f"{kind:8} shares    max/min {f['max_min_ratio']:.3f}, largest deviation "
      f"{f['max_deviation'] * 100:.2f} %, unattributed {f['unattributed']}; {counts}")
EOF
)
DRILL_PY=$(cat <<'EOF'
import json, sys
kind, drill, round_ = sys.argv[1:4]
r = json.load(sys.stdin)
d = r["front"]["failover"]
ms = lambda t: "not seen" if t is None else f"{t:.0f} ms"
print(f"{kind:8} {drill:9} round {round_}: {r['requests']} requests, failed {d['failed_requests']}, "
      f"first error {ms(d['first_error_ms'])}, failover {ms(d['failover_ms'])}, "
      f"detection {ms(d['detection_ms'])}, re-admission {ms(d['readmission_ms'])}"
      + (f"; error: {d['error']}" if d["error"] else ""))
EOF
)

for kind in $BALANCERS; do
    start_balancer "$kind"
    through --requests 20000 -c 16 | python3 -c "$SHARES_PY" "$kind"
    for round in $(seq 1 "$ROUNDS"); do
        for drill in kill:3 health:4; do
            through --rate 400 -c 32 --duration 8 --timeout-ms 2000 \
                --failover "$drill" --failover-at 2 --failover-for 3 | python3 -c "$DRILL_PY" "$kind" "$drill" "$round"
            sleep 1 # the server's checks settle before the next drill
        done
    done
    stop_balancer
done
