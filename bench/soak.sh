#!/usr/bin/env bash
# A long run under load, watches, faults and agent restarts: memory must stay flat and no
# server may be lost.
#
#   cargo build --release -p farm            # this script builds nothing
#   bench/soak.sh                            # 30 minutes
#   SOAK_S=120 bench/soak.sh                 # a short check of the script itself
#
# For SOAK_S seconds, against a farm of SERVERS (process runtime, ports picked by the kernel):
# - load: one open-model load test after another through REST (POST /api/load-tests, then
#   followed by id), RATE requests/s over every server, each LOAD_S seconds long;
# - watches: two `Watch` streams (grpcurl) and a poller of GET /api/servers every second;
# - faults, every FAULT_EVERY_S seconds, in turn: SIGKILL of a random node, SIGKILL of a
#   random agent (its runtime starts it again), a stop and a start, a pause and an unpause, a
#   fault profile (latency, a seeded abort and a rate limit) on a random tenth of the farm for
#   15 s, and a failing /health on one server for 10 s; both profiles clear themselves.
# Every SAMPLE_EVERY_S seconds it records the resident and proportional memory of farm up
# (controller and gateway), and the mean of the agents and of the nodes. At the end it prints
# the first and last samples and the highest, and checks that every server is healthy again
# within 30 s of the last fault. Traffic goes to 127.0.0.1 only; every loop is bounded.
#
# Settings (environment): FARM_BIN, SERVERS (50), SOAK_S (1800), RATE (500), LOAD_S (60),
# FAULT_EVERY_S (20), SAMPLE_EVERY_S (30).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
source scripts/lib/farm.sh

FARM_BIN=${FARM_BIN:-$(pick_binary target/x86_64-unknown-linux-gnu/release/farm target/release/farm)}
SERVERS=${SERVERS:-50}
SOAK_S=${SOAK_S:-1800}
RATE=${RATE:-500}
LOAD_S=${LOAD_S:-60}
FAULT_EVERY_S=${FAULT_EVERY_S:-20}
SAMPLE_EVERY_S=${SAMPLE_EVERY_S:-30}
command -v grpcurl >/dev/null || { echo "soak: grpcurl is needed for the Watch streams" >&2; exit 2; }

export FARM_DATA_DIR=$FARM_WORK/data
start_farm "$FARM_BIN" --servers "$SERVERS" --listen 127.0.0.1:0 --gateway-listen 127.0.0.1:0 \
    --node-base-port 0
GATEWAY=$FARM_GATEWAY_URL
CONTROLLER=${FARM_CONTROLLER_URL#http://}
echo "soak: $FARM_BIN, $SERVERS servers for ${SOAK_S}s; gateway $GATEWAY"
END=$((SECONDS + SOAK_S))
STOP=$FARM_WORK/stop

agents() { pgrep -f -- "--controller $FARM_CONTROLLER_URL" || true; }
nodes() { local a; for a in $(agents); do pgrep -P "$a" || true; done; }

# sample: one line "<elapsed s> <farm up RSS> <farm up PSS> <agent RSS> <agent PSS> <node RSS>
# <node PSS> <servers healthy> <farm up anonymous RSS> <farm up file-backed RSS>", sizes in KiB,
# per-process means for agents and nodes. farm up's RSS is split because its file-backed part
# is the binary's code, faulted in as code paths first run (and given back under pressure),
# while the anonymous part is the memory it allocates.
sample() {
    local a n healthy
    a=$(agents); n=$(nodes)
    healthy=$(curl -s --max-time 10 "$GATEWAY/api/servers?status=healthy" |
        python3 -c 'import json,sys; print(len(json.load(sys.stdin)["servers"]))' 2>/dev/null || echo "?")
    python3 - "$((SOAK_S - (END - SECONDS)))" "$FARM_PID" "$healthy" "$a" "$n" <<'EOF'
import sys
elapsed, farm, healthy, agents, nodes = sys.argv[1:6]
def kib(pid, key, file):
    try:
        for line in open(f"/proc/{pid}/{file}"):
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
def mean(pids, key, file):
    pids = pids.split()
    return sum(kib(p, key, file) for p in pids) // max(1, len(pids))
print(elapsed, kib(farm, "VmRSS", "status"), kib(farm, "Pss", "smaps_rollup"),
      mean(agents, "VmRSS", "status"), mean(agents, "Pss", "smaps_rollup"),
      mean(nodes, "VmRSS", "status"), mean(nodes, "Pss", "smaps_rollup"), healthy,
      kib(farm, "RssAnon", "status"), kib(farm, "RssFile", "status"))
EOF
}

# Load: one run after another, each followed by id until it is done.
load() {
    while [[ ! -e $STOP ]]; do
        local id
        id=$(curl -s --max-time 10 -X POST "$GATEWAY/api/load-tests" -H 'content-type: application/json' \
            -d "{\"path\":\"/\",\"rate_per_second\":$RATE,\"duration_seconds\":$LOAD_S,\"concurrency\":32}" |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' 2>/dev/null) || { sleep 1; continue; }
        for _ in $(seq 1 $((LOAD_S + 30))); do
            [[ -e $STOP ]] && { curl -s -X POST "$GATEWAY/api/load-tests/$id/stop" >/dev/null; return; }
            curl -s --max-time 10 "$GATEWAY/api/load-tests/$id" | grep -q '"done":true' && break
            sleep 1
        done
    done
}

watch_stream() {
    while [[ ! -e $STOP ]]; do
        timeout 120 grpcurl -plaintext -d '{}' "$CONTROLLER" farm.v1.FarmService/Watch >/dev/null 2>&1 || true
    done
}

poll() {
    while [[ ! -e $STOP ]]; do
        curl -s -o /dev/null --max-time 10 "$GATEWAY/api/servers" || true
        sleep 1
    done
}

act() { # act ID ACTION
    curl -s -o /dev/null --max-time 30 -X POST "$GATEWAY/api/servers/$1/action" \
        -H 'content-type: application/json' -d "{\"action\":\"$2\"}"
}

faults() {
    local turn=0 id victim
    while [[ ! -e $STOP ]]; do
        sleep "$FAULT_EVERY_S"
        [[ -e $STOP ]] && return
        id=$((RANDOM % SERVERS + 1))
        case $((turn % 6)) in
            0) victim=$(nodes | shuf -n 1); [[ -n $victim ]] && kill -KILL "$victim" ;;
            1) victim=$(agents | shuf -n 1); [[ -n $victim ]] && kill -KILL "$victim" ;;
            2) act "$id" stop; sleep 2; act "$id" start ;;
            3) act "$id" pause; sleep 2; act "$id" unpause ;;
            4) curl -s -o /dev/null --max-time 30 -X POST "$GATEWAY/api/faults" -H 'content-type: application/json' \
                   -d "{\"targets\":{\"all\":true,\"share_percent\":10,\"share_seed\":$turn},\"faults\":{
                        \"latency\":{\"delay_ms\":50,\"jitter_ms\":20,\"when\":{\"duration_seconds\":15}},
                        \"abort\":{\"statuses\":[{\"status\":503}],\"when\":{\"percent\":10,\"seed\":$turn,\"duration_seconds\":15}},
                        \"rate_limit\":{\"requests_per_second\":5,\"when\":{\"duration_seconds\":15}}}}" ;;
            5) curl -s -o /dev/null --max-time 30 -X PUT "$GATEWAY/api/servers/$id/faults" -H 'content-type: application/json' \
                   -d '{"health":{"status":503,"when":{"duration_seconds":10}}}' ;;
        esac
        turn=$((turn + 1))
    done
}

load & LOAD=$!
watch_stream & W1=$!
watch_stream & W2=$!
poll & POLL=$!
faults & FAULTS=$!

SAMPLES=$FARM_WORK/samples.txt
echo "#  s  farm-up-RSS farm-up-PSS agent-RSS agent-PSS node-RSS node-PSS healthy farm-up-anon farm-up-file (KiB, means)"
sample | tee -a "$SAMPLES"
while ((SECONDS < END)); do
    sleep "$SAMPLE_EVERY_S"
    sample | tee -a "$SAMPLES"
done
touch "$STOP"
kill "$W1" "$W2" 2>/dev/null || true
pkill -P "$W1" 2>/dev/null || true
pkill -P "$W2" 2>/dev/null || true
wait "$LOAD" "$POLL" "$FAULTS" 2>/dev/null || true

# Every server healthy again within 30 s of the last fault.
outcome=0
for _ in $(seq 1 30); do
    healthy=$(curl -s --max-time 10 "$GATEWAY/api/servers?status=healthy" |
        python3 -c 'import json,sys; print(len(json.load(sys.stdin)["servers"]))' 2>/dev/null || echo 0)
    [[ $healthy == "$SERVERS" ]] && break
    sleep 1
done
if [[ $healthy == "$SERVERS" ]]; then
    echo "soak: all $SERVERS servers healthy at the end; none lost"
else
    echo "soak: LOST: $healthy of $SERVERS healthy 30 s after the last fault"
    outcome=1
fi
python3 - "$SAMPLES" <<'EOF'
import sys
rows = [[float(x) for i, x in enumerate(line.split()) if i != 7]
        for line in open(sys.argv[1]) if line.strip()]
names = ["farm up RSS", "farm up PSS", "agent RSS", "agent PSS", "node RSS", "node PSS",
         "farm up anon", "farm up file"]
for i, name in enumerate(names, start=1):
    first, last, top = rows[0][i], rows[-1][i], max(r[i] for r in rows)
    print(f"soak: {name:12} first {first/1024:7.2f} MiB, last {last/1024:7.2f} MiB, "
          f"highest {top/1024:7.2f} MiB ({(last - first) / max(first, 1) * 100:+.1f} % first to last)")
EOF
exit "$outcome"
