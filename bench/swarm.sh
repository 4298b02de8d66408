#!/usr/bin/env bash
# The farm on a real two-node Docker Swarm (the lab of scripts/swarm-lab, built here for the
# run and removed after): how long until SERVERS servers are healthy, against the engine's own
# floor, and the memory each server takes on each node.
#
#   cargo build --release -p farm            # this script builds nothing
#   sudo bench/swarm.sh                      # 50 servers
#   sudo SERVERS=10 bench/swarm.sh
#
# 1. The floor: SERVERS services made the way the farm makes them (one replica each, the same
#    image by ID, host-mode port, DNSRR, the farm's overlay), running
#    the node alone (`farm node`, no agent, no controller): the time from the first
#    `service create` until every task runs, as the engine reports it. Created one after
#    another with the docker CLI, as the farm creates them through the API.
# 2. The farm: `farm up --runtime swarm --servers SERVERS`: the time it reports from its first
#    service until every server is healthy (agent connected, node answering), and its whole
#    start (image copy included).
# 3. Memory: every task container's memory on each node (`docker stats`, the cgroup's usage),
#    summed and divided by the containers on that node.
#
# Settings (environment): FARM_BIN, SERVERS (50), FARM_LAB_NAME (bsw), FARM_LAB_SUBNET
# (10.231.250.0/24).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
source scripts/lib/farm.sh

FARM_BIN=${FARM_BIN:-$(pick_binary target/x86_64-unknown-linux-gnu/release/farm target/release/farm)}
SERVERS=${SERVERS:-50}
export FARM_LAB_NAME=${FARM_LAB_NAME:-bsw}
export FARM_LAB_SUBNET=${FARM_LAB_SUBNET:-10.231.250.0/24}
((EUID == 0)) || { echo "swarm bench: the lab needs root" >&2; exit 2; }

scripts/swarm-lab up >/dev/null
cleanup_lab() {
    stop_farm
    scripts/swarm-lab down >/dev/null || true
}
trap cleanup_lab EXIT
eval "$(scripts/swarm-lab env)"
M="docker -H $FARM_LAB_MANAGER_HOST"
W="docker -H $FARM_LAB_WORKER_HOST"
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(now)"; }

# Memory of the running task containers of farm $1 on engine $2: "<containers> <MiB each>".
memory_per_container() {
    $2 stats --no-stream --format '{{.MemUsage}}' $($2 ps -q --filter "label=io.farm.name=$1") |
        python3 -c '
import re, sys
units = {"B": 1 / 2**20, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024, "kB": 1e3 / 2**20, "MB": 1e6 / 2**20}
sizes = []
for line in sys.stdin:
    m = re.match(r"\s*([\d.]+)\s*([A-Za-z]+)", line)
    if m: sizes.append(float(m.group(1)) * units[m.group(2)])
print(len(sizes), f"{sum(sizes) / max(len(sizes), 1):.2f}")'
}

echo "swarm bench: $FARM_BIN, $SERVERS servers, lab $FARM_LAB_NAME ($FARM_LAB_N1_ADDR, $FARM_LAB_N2_ADDR)"

# 2 first: the farm puts the image on both nodes, which the floor then uses.
start=$(now)
start_farm "$FARM_BIN" --runtime swarm --servers "$SERVERS" --name-prefix bsw-farm \
    --listen "$FARM_LAB_HOST_ADDR:0" --gateway-listen 127.0.0.1:0 --node-base-port 0 \
    --swarm-manager "$FARM_LAB_MANAGER_HOST" --swarm-engine "$FARM_LAB_WORKER_HOST"
whole=$(since "$start")
healthy=$(sed -n 's/^farm: all [0-9]* servers healthy in \([0-9.]*\) s.*/\1/p' "$FARM_LOG")
sleep 10 # let every node settle before reading its memory
read -r farm_n1 farm_mem_n1 < <(memory_per_container bsw-farm "$M")
read -r farm_n2 farm_mem_n2 < <(memory_per_container bsw-farm "$W")
image=$($M service inspect bsw-farm-server-1 --format '{{.Spec.TaskTemplate.ContainerSpec.Image}}')
stop_farm
FARM_PID=

# 1. The floor.
$M network create --driver overlay --attachable --label io.farm.name=bsw-floor bsw-floor-net >/dev/null
start=$(now)
for id in $(seq 1 "$SERVERS"); do
    $M service create --detach --quiet --no-resolve-image --name "bsw-floor-$id" \
        --label io.farm.name=bsw-floor --container-label io.farm.name=bsw-floor \
        --network bsw-floor-net --endpoint-mode dnsrr --publish mode=host,target=8000 \
        "$image" node --id "$id" --listen 0.0.0.0:8000 >/dev/null
done
created=$(since "$start")
deadline=$((SECONDS + 300))
until [[ $($M service ls --filter label=io.farm.name=bsw-floor --format '{{.Replicas}}' | grep -c '^1/1') -eq $SERVERS ]]; do
    ((SECONDS < deadline)) || { echo "swarm bench: the floor's tasks did not all run within 300 s" >&2; exit 1; }
    sleep 0.2
done
floor=$(since "$start")
sleep 10
read -r floor_n1 floor_mem_n1 < <(memory_per_container bsw-floor "$M")
read -r floor_n2 floor_mem_n2 < <(memory_per_container bsw-floor "$W")
$M service rm $($M service ls -q --filter label=io.farm.name=bsw-floor) >/dev/null
for _ in $(seq 1 100); do $M network rm bsw-floor-net >/dev/null 2>&1 && break; sleep 0.3; done

echo
echo "| what | ${SERVERS} servers |"
echo "|---|---|"
echo "| floor: services made (CLI, one by one) | ${created} s |"
echo "| floor: every task running (node alone) | ${floor} s |"
echo "| farm: first service to all healthy (its banner) | ${healthy} s |"
echo "| farm: farm up to all healthy, image copy included | ${whole} s |"
echo "| memory per server, n1 (manager) | farm ${farm_mem_n1} MiB over ${farm_n1}; floor (node alone) ${floor_mem_n1} MiB over ${floor_n1} |"
echo "| memory per server, n2 (worker) | farm ${farm_mem_n2} MiB over ${farm_n2}; floor (node alone) ${floor_mem_n2} MiB over ${floor_n2} |"
