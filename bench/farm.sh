#!/usr/bin/env bash
# Start-up time, memory per server, health-check cost and clean shutdown of a whole farm.
#
#   cargo build --release -p farm          # this script builds nothing
#   bench/farm.sh
#
# 1. Starts `farm up --servers SERVERS`, reads the controller's URL from its "farm: controller"
#    line and measures the wall time until `farm health` first exits 0 (polled every POLL_S
#    seconds), next to farm up's own "all N servers healthy in X s" line.
# 2. After SETTLE_S seconds, sums RSS (/proc/PID/status VmRSS) and PSS (/proc/PID/smaps_rollup;
#    fairer, since the copies of one binary share its pages) over every `farm agent` and
#    `farm node` process of the farm, and divides by SERVERS. The farm's agents are those whose
#    command line names its controller URL, its nodes the agents' `farm node` children. The
#    farm up process (controller, and gateway where there is one) is shown apart.
# 3. Runs `farm health --json` HEALTH_RUNS times: the controller-side duration_ms (min, median,
#    max) and the client's wall time, which includes starting the process and connecting.
# 4. Sends SIGTERM to farm up, times its exit, and counts the farm's processes left (should be 0).
# Traffic goes to 127.0.0.1 only; whatever is left is killed on exit. By default the controller,
# the gateway and every node listen on a port the kernel chooses (port 0), so no port is guessed.
#
# Settings (environment): FARM_BIN (target/x86_64-unknown-linux-gnu/release/farm, else
# target/release/farm), SERVERS (50), BASE_PORT (0: every node on a port of the kernel's choice;
# else node N on BASE_PORT+N), CONTROLLER_PORT (0), GATEWAY_PORT (0; used where farm up has a
# gateway), POLL_S (0.02), START_TIMEOUT_S (120), SETTLE_S (2), HEALTH_RUNS (20). Ports given
# other than 0 are best kept below the kernel's ephemeral range (32768-60999), where client
# sockets of other programs cannot hold them.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# .cargo/config.toml names the build target, so release builds land in target/<triple>/release.
if [[ -z ${FARM_BIN:-} ]]; then
    for FARM_BIN in "$ROOT/target/x86_64-unknown-linux-gnu/release/farm" "$ROOT/target/release/farm"; do
        [[ -x $FARM_BIN ]] && break
    done
fi
SERVERS=${SERVERS:-50}
BASE_PORT=${BASE_PORT:-0}
CONTROLLER_PORT=${CONTROLLER_PORT:-0}
GATEWAY_PORT=${GATEWAY_PORT:-0}
POLL_S=${POLL_S:-0.02}
START_TIMEOUT_S=${START_TIMEOUT_S:-120}
SETTLE_S=${SETTLE_S:-2}
HEALTH_RUNS=${HEALTH_RUNS:-20}

# The controller's URL, from farm up's output once it is running.
CONTROLLER=

die() { echo "farm-bench: $*" >&2; exit 1; }
source "$ROOT/scripts/lib/ports.sh"

[[ -x $FARM_BIN ]] || die "$FARM_BIN not found; build it first: cargo build --release -p farm"
command -v python3 >/dev/null || die "python3 is needed to read the JSON"
# port_busy PORT: whether something listens on PORT; port 0 (the kernel's choice) never is.
port_busy() { (($1 != 0)) && (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_busy "$CONTROLLER_PORT" && die "port $CONTROLLER_PORT is in use; set CONTROLLER_PORT"
UP_ARGS=(--servers "$SERVERS" --listen "127.0.0.1:$CONTROLLER_PORT" --node-base-port "$BASE_PORT")
if "$FARM_BIN" up --help | grep -q -- --gateway-listen; then
    port_busy "$GATEWAY_PORT" && die "port $GATEWAY_PORT is in use; set GATEWAY_PORT"
    UP_ARGS+=(--gateway-listen "127.0.0.1:$GATEWAY_PORT")
fi
if ((BASE_PORT != 0)); then
    for ((n = 1; n <= SERVERS; n++)); do
        port_busy $((BASE_PORT + n)) && die "port $((BASE_PORT + n)) is in use; set BASE_PORT"
    done
fi

WORK=$(mktemp -d -t farm-bench.XXXXXX)
UP_PID=
cleanup() {
    if [[ -n $UP_PID ]] && kill -0 "$UP_PID" 2>/dev/null; then
        kill -TERM "$UP_PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$UP_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$UP_PID" 2>/dev/null || true
    fi
    # Anything of this farm still alive (agents name our controller URL; nodes as in farm_pids).
    local pid
    for pid in $(farm_pids); do kill -KILL "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.3f", b - a}'; }
# timed_out: whether START_TIMEOUT_S have passed since t0 (the launch of farm up).
timed_out() { awk -v a="$t0" -v b="$(now)" -v m="$START_TIMEOUT_S" 'BEGIN {exit !(b - a > m)}'; }

# argv PID: sets ARGV to the arguments of process PID; fails when it is gone.
argv() { [[ -r /proc/$1/cmdline ]] && mapfile -d '' -t ARGV 2>/dev/null <"/proc/$1/cmdline"; }

# started PID: when process PID started (/proc/PID/stat field 22), to tell it from a later
# process that got the same pid.
started() {
    local stat fields
    read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
    read -ra fields <<<"${stat##*) }"
    echo "${fields[19]}"
}

# farm_pids [agent|node]: pids of this farm's agent and node processes, found by their command
# lines and parents, not by ports: the agents are `farm agent` processes that name our
# controller URL (`--controller $CONTROLLER`), the nodes are `farm node` children of those
# agents. Every node seen is remembered in $WORK/nodes (pid and start time) and counted as long
# as it lives, so that a node its agent left behind (and that is re-parented) is still found.
farm_pids() {
    local want=${1:-} pid i agents=() nodes=() start
    [[ -n $CONTROLLER ]] || return 0
    for pid in $(pgrep -f -- "--controller[ =]$CONTROLLER" || true); do
        argv "$pid" || continue
        [[ ${ARGV[1]:-} == agent ]] || continue
        for ((i = 2; i < ${#ARGV[@]}; i++)); do
            if [[ ${ARGV[i]} == --controller && ${ARGV[i + 1]:-} == "$CONTROLLER" || ${ARGV[i]} == "--controller=$CONTROLLER" ]]; then
                agents+=("$pid")
                break
            fi
        done
    done
    if ((${#agents[@]} > 0)); then
        for pid in $(pgrep -P "$(IFS=,; echo "${agents[*]}")" || true); do
            argv "$pid" && [[ ${ARGV[1]:-} == node ]] || continue
            start=$(started "$pid") && echo "$pid $start" >>"$WORK/nodes"
        done
    fi
    if [[ -s $WORK/nodes ]]; then
        while read -r pid start; do
            [[ $(started "$pid" 2>/dev/null) == "$start" ]] && nodes+=("$pid")
        done < <(sort -u "$WORK/nodes")
    fi
    if [[ $want != node ]] && ((${#agents[@]} > 0)); then printf '%s\n' "${agents[@]}"; fi
    if [[ $want != agent ]] && ((${#nodes[@]} > 0)); then printf '%s\n' "${nodes[@]}"; fi
    return 0
}

# kb FIELD FILE: the value in kB of a "Field:   N kB" line.
kb() { awk -v f="$1:" '$1 == f {print $2; found = 1} END {if (!found) print 0}' "$2" 2>/dev/null || echo 0; }

echo "farm-bench: $FARM_BIN (built $(date -r "$FARM_BIN" "+%F %T")), $SERVERS servers"
echo "            farm up ${UP_ARGS[*]}"
echo "            $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB"

# --- 1. start-up
# The machine's available memory before the farm: its drop once the farm runs is what the
# farm costs the machine, controller, gateway and kernel overhead included.
mem_available() { awk '$1 == "MemAvailable:" {print $2}' /proc/meminfo; }
available_before=$(mem_available)
t0=$(now)
"$FARM_BIN" up "${UP_ARGS[@]}" >"$WORK/up.log" 2>&1 &
UP_PID=$!
# farm up says where its controller listens before the servers are healthy.
until line=$(first_line "$WORK/up.log" '^farm: controller[[:space:]]') &&
    CONTROLLER=$(first_url "${line#"farm: controller"}"); do
    kill -0 "$UP_PID" 2>/dev/null || { cat "$WORK/up.log" >&2; die "farm up exited early"; }
    timed_out && { cat "$WORK/up.log" >&2; die "farm up named no controller URL within $START_TIMEOUT_S s"; }
    sleep "$POLL_S"
done
polls=0
until "$FARM_BIN" health --controller "$CONTROLLER" >/dev/null 2>&1; do
    polls=$((polls + 1))
    kill -0 "$UP_PID" 2>/dev/null || { cat "$WORK/up.log" >&2; die "farm up exited early"; }
    timed_out && die "not all healthy after $START_TIMEOUT_S s"
    sleep "$POLL_S"
done
startup=$(elapsed "$t0")
own_line=
for _ in $(seq 100); do
    own_line=$(grep -m1 -o 'all [0-9]* servers healthy in [0-9.]* s' "$WORK/up.log" || true)
    [[ -n $own_line ]] && break
    sleep 0.05
done
echo
echo "start-up:"
echo "  farm health first exited 0 after $startup s (wall, from launching farm up; $polls failed polls)"
echo "  farm up says: ${own_line:-<no 'healthy in' line seen>}"
echo "  controller $CONTROLLER"

# --- 2. memory
sleep "$SETTLE_S"
mapfile -t agents < <(farm_pids agent)
mapfile -t nodes < <(farm_pids node)
sum_kb() {
    local field=$1 file=$2 total=0 pid
    shift 2
    for pid in "$@"; do total=$((total + $(kb "$field" "/proc/$pid/$file"))); done
    echo "$total"
}
a_rss=$(sum_kb VmRSS status "${agents[@]}")
n_rss=$(sum_kb VmRSS status "${nodes[@]}")
a_pss=$(sum_kb Pss smaps_rollup "${agents[@]}")
n_pss=$(sum_kb Pss smaps_rollup "${nodes[@]}")
c_rss=$(kb VmRSS "/proc/$UP_PID/status")
c_pss=$(kb Pss "/proc/$UP_PID/smaps_rollup")
available_after=$(mem_available)
# What the farm itself reports for its servers (the sum of their proportional sizes).
reported=$("$FARM_BIN" status --controller "$CONTROLLER" --json 2>/dev/null |
    python3 -c 'import json,sys; print(sum(s["memory_bytes"] for s in json.load(sys.stdin)) // 1024)' 2>/dev/null || echo 0)
echo
echo "memory ($SETTLE_S s after healthy; ${#agents[@]} agents, ${#nodes[@]} nodes):"
awk -v n="$SERVERS" -v ar="$a_rss" -v nr="$n_rss" -v ap="$a_pss" -v np="$n_pss" \
    -v cr="$c_rss" -v cp="$c_pss" -v drop="$((available_before - available_after))" \
    -v reported="$reported" 'BEGIN {
    printf "  per server (agent + node): RSS %.2f MiB, PSS %.2f MiB\n", (ar + nr) / n / 1024, (ap + np) / n / 1024
    printf "    agent: RSS %.2f MiB, PSS %.2f MiB;  node: RSS %.2f MiB, PSS %.2f MiB\n", ar / n / 1024, ap / n / 1024, nr / n / 1024, np / n / 1024
    printf "  all %d servers: RSS %.1f MiB, PSS %.1f MiB\n", n, (ar + nr) / 1024, (ap + np) / 1024
    printf "  controller and gateway (the farm up process): RSS %.1f MiB, PSS %.1f MiB\n", cr / 1024, cp / 1024
    printf "  host: the machine'"'"'s available memory dropped %.1f MiB (servers, controller, gateway, kernel)\n", drop / 1024
    printf "  the farm reports its servers at %.1f MiB (sum of memory_bytes): %.0f %% of the servers'"'"' PSS, %.0f %% of the host'"'"'s drop\n", reported / 1024, reported / (ap + np) * 100, reported / drop * 100
}'

# --- 3. health checks
: >"$WORK/health.tsv"
for ((i = 1; i <= HEALTH_RUNS; i++)); do
    t=$(now)
    rc=0
    "$FARM_BIN" health --controller "$CONTROLLER" --json >"$WORK/health.json" 2>"$WORK/health.err" || rc=$?
    wall=$(elapsed "$t")
    python3 - "$WORK/health.json" "$wall" "$rc" >>"$WORK/health.tsv" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
print(f"{doc['duration_ms']}\t{float(sys.argv[2]) * 1000}\t{doc['healthy']}\t{len(doc['servers'])}\t{sys.argv[3]}")
EOF
done
echo
python3 - "$WORK/health.tsv" "$HEALTH_RUNS" <<'EOF'
import statistics, sys
rows = [line.split("\t") for line in open(sys.argv[1]).read().splitlines()]
ctl = [float(r[0]) for r in rows]
wall = [float(r[1]) for r in rows]
unhealthy = [r for r in rows if r[2] != r[3] or r[4] != "0"]
fmt = lambda xs: f"min {min(xs):.2f}, median {statistics.median(xs):.2f}, max {max(xs):.2f} ms"
print(f"farm health --json x {sys.argv[2]}:")
print(f"  in the controller (duration_ms): {fmt(ctl)}")
print(f"  client wall time (process start, connect, check, print): {fmt(wall)}")
print(f"  runs with a server not healthy or a non-zero exit: {len(unhealthy)}")
EOF

# --- 4. shutdown
all_before=$(farm_pids | wc -l)
t=$(now)
kill -TERM "$UP_PID"
for _ in $(seq 300); do kill -0 "$UP_PID" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$UP_PID" 2>/dev/null; then
    stop="did not exit within 15 s"
else
    wait "$UP_PID" 2>/dev/null && up_rc=0 || up_rc=$?
    stop="exited with status $up_rc after $(elapsed "$t") s"
    UP_PID=
fi
left=0
for _ in $(seq 20); do
    left=$(farm_pids | wc -l)
    ((left == 0)) && break
    sleep 0.1
done
echo
echo "shutdown (SIGTERM to farm up; $all_before agent/node processes before):"
echo "  farm up $stop"
echo "  farm agent/node processes left: $left"
((left == 0)) || { ps -o pid,ppid,args -p "$(farm_pids | paste -sd,)" >&2 || true; exit 1; }
