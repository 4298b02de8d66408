#!/usr/bin/env bash
# The farm on a real two-node Docker Swarm (the lab of scripts/swarm-lab, built here for the
# run and removed after): how long until SERVERS servers are healthy, against the engine's own
# floor, and the memory each server takes on each node.
#
#   cargo build --release -p farm            # this script builds nothing
#   sudo bench/swarm.sh                      # 50 servers
#   sudo SERVERS=10 ROUNDS=1 bench/swarm.sh
#
# 1. The floor: SERVERS services made the way the farm makes them (one replica each, the same
#    image by ID, host-mode port, DNSRR, the farm's overlay), running
#    the node alone (`farm node`, no agent, no controller): the time from the first
#    `service create` until every task runs, as the engine reports it. Created one after
#    another with the docker CLI, as the farm creates them through the API.
# 2. The farm: `farm up --runtime swarm --servers SERVERS`: the time it reports from creating
#    its controller's service until every server is healthy (agent connected, node answering;
#    the controller's task starts first and then makes the servers' services), and its whole
#    start (image copy included).
# 3. Memory: every server task container's memory on each node (`docker stats`, the cgroup's
#    usage), summed and divided by the containers on that node; the controller's task apart.
# Farm and floor run ROUNDS times each, alternately; each round prints its row.
#
# Settings (environment): FARM_BIN, SERVERS (50), ROUNDS (3), FARM_LAB_NAME (bsw),
# FARM_LAB_SUBNET (10.231.250.0/24).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
source scripts/lib/farm.sh

FARM_BIN=${FARM_BIN:-$(pick_binary target/x86_64-unknown-linux-gnu/release/farm target/release/farm)}
SERVERS=${SERVERS:-50}
ROUNDS=${ROUNDS:-3}
# Removing the farm from the swarm (controller, then servers, then the network) takes longer
# than a farm of processes.
export FARM_STOP_WAIT_S=120
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

# Memory of the running task containers on engine $1 with every label filter $2...:
# "<containers> <MiB each>".
memory_per_container() {
    local engine=$1 filters=()
    shift
    for label in "$@"; do filters+=(--filter "label=$label"); done
    $engine stats --no-stream --format '{{.MemUsage}}' $($engine ps -q "${filters[@]}") |
        python3 -c '
import re, sys
units = {"B": 1 / 2**20, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024, "kB": 1e3 / 2**20, "MB": 1e6 / 2**20}
sizes = []
for line in sys.stdin:
    m = re.match(r"\s*([\d.]+)\s*([A-Za-z]+)", line)
    if m: sizes.append(float(m.group(1)) * units[m.group(2)])
print(len(sizes), f"{sum(sizes) / max(len(sizes), 1):.2f}")'
}

echo "swarm bench: $FARM_BIN, $SERVERS servers, $ROUNDS rounds, lab $FARM_LAB_NAME ($FARM_LAB_N1_ADDR, $FARM_LAB_N2_ADDR)"
echo
echo "| round | floor: services made (CLI, one by one) | floor: every task running (node alone) | farm: controller's service to all healthy (banner) | farm: farm up to all healthy, image copy included | memory per server n1 / n2: farm (servers over) | floor (node alone) | farm's controller task |"
echo "|---|---|---|---|---|---|---|---|"

for round in $(seq 1 "$ROUNDS"); do
    # The farm first: it puts the image on both nodes, which the floor then uses.
    start=$(now)
    start_farm "$FARM_BIN" --runtime swarm --servers "$SERVERS" --name-prefix bsw-farm \
        --listen 127.0.0.1:0 --gateway-listen 127.0.0.1:0 --node-base-port 0 \
        --swarm-manager "$FARM_LAB_MANAGER_HOST" --swarm-engine "$FARM_LAB_WORKER_HOST"
    whole=$(since "$start")
    healthy=$(sed -n 's/^farm: all [0-9]* servers healthy in \([0-9.]*\) s.*/\1/p' "$FARM_LOG")
    sleep 10 # let every node settle before reading its memory
    read -r farm_n1 farm_mem_n1 < <(memory_per_container "$M" io.farm.name=bsw-farm io.farm.server-id)
    read -r farm_n2 farm_mem_n2 < <(memory_per_container "$W" io.farm.name=bsw-farm io.farm.server-id)
    read -r _ controller_mem < <(memory_per_container "$M" io.farm.name=bsw-farm io.farm.role=controller)
    image=$($M service inspect bsw-farm-server-1 --format '{{.Spec.TaskTemplate.ContainerSpec.Image}}')
    stop_farm
    FARM_PID=

    # The floor.
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
    read -r floor_n1 floor_mem_n1 < <(memory_per_container "$M" io.farm.name=bsw-floor)
    read -r floor_n2 floor_mem_n2 < <(memory_per_container "$W" io.farm.name=bsw-floor)
    $M service rm $($M service ls -q --filter label=io.farm.name=bsw-floor) >/dev/null
    for _ in $(seq 1 100); do $M network rm bsw-floor-net >/dev/null 2>&1 && break; sleep 0.3; done

    echo "| $round | ${created} s | ${floor} s | ${healthy} s | ${whole} s | ${farm_mem_n1} / ${farm_mem_n2} MiB (${farm_n1} + ${farm_n2}) | ${floor_mem_n1} / ${floor_mem_n2} MiB (${floor_n1} + ${floor_n2}) | ${controller_mem} MiB |"
done
