# Shared by the scripts that need a farm or farm processes of their own (gateway/bench.sh,
# gateway/schemathesis.sh, bench/loadtest.sh, bench/scale.sh): finding the binary, starting
# `farm up` and reading back the addresses it printed (so it can bind port 0), waiting for it,
# finding a node's address, and stopping the farm on exit. The rest about ports is in
# scripts/lib/ports.sh, which this sources.
# Source it from the repository root: `source scripts/lib/farm.sh`.

source "$(dirname "${BASH_SOURCE[0]}")/ports.sh"

# The first executable among the arguments; fails naming them all.
pick_binary() {
    local candidate
    for candidate in "$@"; do
        if [[ -x "$candidate" ]]; then echo "$candidate"; return 0; fi
    done
    echo "none of $* is built" >&2
    return 2
}

FARM_WORK=$(mktemp -d)
FARM_LOG=$FARM_WORK/farm.log
FARM_PID=
FARM_CONTROLLER_URL=
FARM_GATEWAY_URL=

# stop_farm: SIGTERM to the farm, FARM_STOP_WAIT_S (15) s for it to go, then SIGKILL.
stop_farm() {
    if [[ -n "$FARM_PID" ]] && kill -0 "$FARM_PID" 2>/dev/null; then
        kill -TERM "$FARM_PID" 2>/dev/null || true
        for _ in $(seq 1 $((${FARM_STOP_WAIT_S:-15} * 10))); do kill -0 "$FARM_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$FARM_PID" 2>/dev/null || true
    fi
    rm -rf "$FARM_WORK"
}
trap stop_farm EXIT

# start_farm BINARY ARGS...: runs `BINARY up ARGS...` in the background, logging to
# $FARM_LOG, and waits (60 s at most) for its "healthy in" line. Then sets FARM_CONTROLLER_URL
# and FARM_GATEWAY_URL (empty with --no-gateway) from the lines where farm up says where they
# listen, so ARGS can ask for port 0 (`--listen 127.0.0.1:0 --gateway-listen 127.0.0.1:0
# --node-base-port 0`).
start_farm() {
    local binary=$1 line
    shift
    mkdir -p "$FARM_WORK" # stop_farm removes it
    "$binary" up "$@" >"$FARM_LOG" 2>&1 &
    FARM_PID=$!
    line=$(wait_line "$FARM_LOG" '^farm: (all [0-9]+ servers healthy in|not every server turned healthy)' \
        "$FARM_PID" 60 "farm up") || return 1
    if [[ $line != *"healthy in"* ]]; then
        echo "the farm did not turn healthy:" >&2
        cat "$FARM_LOG" >&2
        return 1
    fi
    # Both lines come before the farm is healthy.
    FARM_CONTROLLER_URL=$(farm_url controller) ||
        { echo "farm up named no controller URL:" >&2; cat "$FARM_LOG" >&2; return 1; }
    FARM_GATEWAY_URL=$(farm_url gateway) || FARM_GATEWAY_URL=
}

# farm_url controller|gateway: the URL in farm up's "farm: controller  http://..." or
# "farm: gateway     http://..." line in $FARM_LOG.
farm_url() {
    local line
    line=$(first_line "$FARM_LOG" "^farm: $1[[:space:]]") || return 1
    first_url "${line#"farm: $1"}"
}

# node_address BINARY CONTROLLER_URL ID: the address (host:port) of server ID's node as the
# controller knows it; fails while the controller knows none (node ports are the kernel's
# choice, so this is how to find one).
node_address() {
    "$1" status --controller "$2" --json 2>/dev/null | python3 -c '
import json, sys
try:
    servers = json.load(sys.stdin)
except ValueError:
    sys.exit(1)
found = [s["node_address"] for s in servers if s["id"] == int(sys.argv[1])]
if not found or not found[0] or found[0].endswith(":0"):
    sys.exit(1)
print(found[0])
' "$3"
}
