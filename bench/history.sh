#!/usr/bin/env bash
# What writing the farm's history costs: the database's growth and farm up's CPU, for a farm
# of SERVERS at the agents' 1 Hz, with its history and without (--no-history), one after the
# other on the same machine.
#
#   cargo build --release -p farm          # this script builds nothing
#   bench/history.sh                       # 2 × 10 minutes
#   WINDOW_S=60 bench/history.sh           # a short check of the script itself
#
# For each of "history" and "no history": starts `farm up --servers SERVERS` (ports the kernel
# picks, the history in a fresh directory), lets it settle SETTLE_S seconds, then over WINDOW_S
# seconds measures farm up's CPU (utime + stime from /proc/PID/stat, controller and gateway
# together) and, with the history, the growth of its database file, extrapolated to an hour,
# and the size of its write-ahead log at the end. The log is not growth: SQLite copies it into
# the database every 1,000 pages (about 4 MiB) and then writes it again from its start, so it
# stays at that size; counted with the database over a short window it would pass for growth.
# The first hour is the dearest: it holds one point a second
# per server; after it, seconds are summed into minutes and dropped, and the file stops growing
# at the bounds the history states (FINE_KEPT_SECONDS, COARSE_KEPT_SECONDS, MAX_RUNS,
# MAX_EVENTS). Nothing else runs on the farm; traffic stays on 127.0.0.1.
#
# Settings (environment): FARM_BIN, SERVERS (50), SETTLE_S (30), WINDOW_S (600), MODES
# ("history no-history": which of the two to measure).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
source scripts/lib/farm.sh

FARM_BIN=${FARM_BIN:-$(pick_binary target/x86_64-unknown-linux-gnu/release/farm target/release/farm)}
SERVERS=${SERVERS:-50}
SETTLE_S=${SETTLE_S:-30}
WINDOW_S=${WINDOW_S:-600}
TICKS=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# The size in bytes of the history's files in data directory $1 whose names end in $2
# (".sqlite": the database; ".sqlite-wal": its write-ahead log); 0 when there are none.
history_bytes() {
    local files=("$1"/history/*"$2")
    [[ -e ${files[0]} ]] || { echo 0; return; }
    du -cb "${files[@]}" | tail -1 | cut -f1
}

measure() {
    local label=$1
    shift
    local data=$FARM_WORK/data-$label
    mkdir -p "$data"
    export FARM_DATA_DIR=$data
    start_farm "$FARM_BIN" --servers "$SERVERS" --listen 127.0.0.1:0 --gateway-listen 127.0.0.1:0 \
        --node-base-port 0 "$@"
    sleep "$SETTLE_S"
    local ticks0 bytes0 ticks1 bytes1 wal
    ticks0=$(cpu_ticks "$FARM_PID")
    bytes0=$(history_bytes "$data" .sqlite)
    sleep "$WINDOW_S"
    ticks1=$(cpu_ticks "$FARM_PID")
    bytes1=$(history_bytes "$data" .sqlite)
    wal=$(history_bytes "$data" .sqlite-wal)
    python3 - "$label" "$ticks0" "$ticks1" "$bytes0" "$bytes1" "$wal" "$WINDOW_S" "$TICKS" <<'PY'
import sys
label, t0, t1, b0, b1, wal, window, hz = sys.argv[1], *map(float, sys.argv[2:])
cpu = (t1 - t0) / hz / window * 100
line = f"{label:>10}: farm up CPU {cpu:.2f} % of one core over {window:.0f} s"
if b1 > 0:
    growth = (b1 - b0) / window * 3600 / 2**20
    line += (f"; database {b0/2**20:.2f} -> {b1/2**20:.2f} MiB, {growth:.1f} MiB per hour at this rate"
             f"; write-ahead log {wal/2**20:.2f} MiB")
print(line)
PY
    stop_farm_only
}

# Stops the farm but keeps $FARM_WORK for the next measurement.
stop_farm_only() {
    kill -TERM "$FARM_PID" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$FARM_PID" 2>/dev/null || break; sleep 0.1; done
    FARM_PID=
}

echo "history bench: $FARM_BIN, $SERVERS servers, settle ${SETTLE_S} s, window ${WINDOW_S} s; $(nproc) cores"
MODES=${MODES:-history no-history}
for mode in $MODES; do
    case $mode in
    history) measure history ;;
    no-history) measure no-history --no-history ;;
    *) echo "history bench: unknown mode $mode" >&2; exit 2 ;;
    esac
done
