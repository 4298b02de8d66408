# Shared by the scripts that need a farm of their own (gateway/bench.sh, gateway/schemathesis.sh):
# finding the binary, free ports, starting `farm up`, waiting for it, and stopping it on exit.
# Source it from the repository root: `source scripts/lib/farm.sh`.

# The first executable among the arguments; fails naming them all.
pick_binary() {
    local candidate
    for candidate in "$@"; do
        if [[ -x "$candidate" ]]; then echo "$candidate"; return 0; fi
    done
    echo "none of $* is built" >&2
    return 2
}

# Prints "CONTROLLER GATEWAY NODE_BASE": two free ports and a base such that NODE_BASE+1 ..
# NODE_BASE+$1 are free.
free_ports() {
    python3 - "$1" <<'PY'
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
    base = random.randint(20000, 30000)
    if all(free(base + i) for i in range(1, n + 1)):
        break
else:
    sys.exit("no free port range")
print(free(), free(), base)
PY
}

FARM_WORK=$(mktemp -d)
FARM_LOG=$FARM_WORK/farm.log
FARM_PID=

stop_farm() {
    if [[ -n "$FARM_PID" ]] && kill -0 "$FARM_PID" 2>/dev/null; then
        kill -TERM "$FARM_PID" 2>/dev/null || true
        for _ in $(seq 1 150); do kill -0 "$FARM_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$FARM_PID" 2>/dev/null || true
    fi
    rm -rf "$FARM_WORK"
}
trap stop_farm EXIT

# start_farm BINARY ARGS...: runs `BINARY up ARGS...` in the background, logging to
# $FARM_LOG, and waits (60 s at most) for its "healthy in" line.
start_farm() {
    local binary=$1
    shift
    "$binary" up "$@" >"$FARM_LOG" 2>&1 &
    FARM_PID=$!
    for _ in $(seq 1 600); do
        grep -q "healthy in" "$FARM_LOG" && return 0
        if ! kill -0 "$FARM_PID" 2>/dev/null; then
            echo "farm up exited:" >&2
            cat "$FARM_LOG" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "the farm did not turn healthy within 60 s:" >&2
    cat "$FARM_LOG" >&2
    return 1
}
