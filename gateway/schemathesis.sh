#!/usr/bin/env bash
# Property-based run of the gateway's REST API from its own /openapi.json, with every check
# schemathesis has (`--checks all`): no 5xx, every response in the documented schema and
# content type, schema-valid requests accepted, schema-invalid ones refused with a 4xx,
# undocumented methods answered 405 with `Allow`.
#
# It starts a small farm of its own (`farm up`, 3 servers; the controller, the gateway and
# every node on a port the kernel chooses, read back from farm up's output), runs schemathesis
# against it, and stops the farm, whatever happens. Exit status: schemathesis's.
#
#   gateway/schemathesis.sh                    # needs: cargo build -p farm; pip install schemathesis
#   FARM_BIN=path/to/farm MAX_EXAMPLES=50 gateway/schemathesis.sh
#
# Two gateway settings keep the run short without hiding anything: a synchronous load test
# lasts at most 2 s (`--max-load-test-seconds 2`, so schemathesis's favourite boundary value
# is 2 s, not 300 s) and `POST /api/scale` asks for at most 4 servers (`--max-servers 4`,
# not 1000 processes on a CI box). Both bounds are in the served schema, so schemathesis
# also checks that values past them are refused.
set -euo pipefail

cd "$(dirname "$0")/.."

MAX_EXAMPLES=${MAX_EXAMPLES:-25}
SERVERS=3
MAX_SERVERS=4

source scripts/lib/farm.sh
if [[ -z "${FARM_BIN:-}" ]]; then
  FARM_BIN=$(pick_binary target/x86_64-unknown-linux-gnu/debug/farm target/debug/farm \
    target/x86_64-unknown-linux-gnu/release/farm target/release/farm) ||
    { echo "schemathesis.sh: run 'cargo build -p farm' or set FARM_BIN" >&2; exit 2; }
fi
if ! command -v schemathesis >/dev/null; then
  echo "schemathesis.sh: schemathesis is not installed; run 'pip install schemathesis'" >&2
  exit 2
fi

# Port 0 everywhere: servers added by `POST /api/scale` get a port of the kernel's choice too.
start_farm "$FARM_BIN" --servers "$SERVERS" \
  --listen 127.0.0.1:0 \
  --gateway-listen 127.0.0.1:0 \
  --node-base-port 0 \
  --max-load-test-seconds 2 \
  --max-servers "$MAX_SERVERS"
echo "schemathesis.sh: farm of $SERVERS servers up, gateway on $FARM_GATEWAY_URL"

# The slowest answer the API documents is a broadcast with its longest deadline (30 s) to a
# server that does not answer (schemathesis pauses servers too); allow that and a margin.
#
# Three passes: every operation but the faults, the load-test starts and the scenarios first
# (the history's reads among them: runs, events, metrics over time; schemathesis.toml says which
# two of their rules JSON Schema cannot), then the load-test starts and the scenarios, then the
# faults. A load test's rules across
# fields (a front or servers, never both; weights and a failover drill only with a front; a
# drill that ends within the run; a front on this machine; phases that all have a rate or none)
# cannot be said in JSON Schema either, nor can a scenario file's (YAML in a string, whose
# size is bounded in bytes where `maxLength` counts characters), so the second pass does not
# demand that every schema-valid request be accepted; the controller refuses those with a 400
# naming the field, or the line and field. Scenario starts and stops change the farm and
# load it, as load-test starts do. Fuzzed faults are real
# (a minute's latency, hangs), and a load test of the first pass against a server that hangs
# would outlast any response-time bound; the fault operations themselves never wait on a node.
# The faults' rules across fields (one latency shape, percentiles that do not decrease,
# exactly one kind of target) cannot be said in JSON Schema, so the second pass does not
# demand that every schema-valid request be accepted; the controller refuses those with a 400
# naming the field. Nor does it expect a server's faults to be gone after their DELETE: that
# empties the profile, and the profile of a server of the farm is always there, `{}` when it
# has none. Every other check holds.
run() {
  schemathesis --config-file gateway/schemathesis.toml run "$FARM_GATEWAY_URL/openapi.json" \
    --checks all \
    --max-examples "$MAX_EXAMPLES" \
    --workers 1 \
    --request-timeout 120 \
    --max-response-time 45 \
    --generation-database none \
    --no-color \
    "$@"
}
status=0
LOAD_STARTS='^(runLoadTest|startLoadTest|startScenario|stopScenario|checkScenario)$'
run --exclude-tag faults --exclude-operation-id-regex "$LOAD_STARTS" "$@" || status=$?
if [[ $status -eq 0 ]]; then
  run --include-operation-id-regex "$LOAD_STARTS" --exclude-checks positive_data_acceptance "$@" || status=$?
fi
if [[ $status -eq 0 ]]; then
  run --include-tag faults --exclude-checks positive_data_acceptance,use_after_free "$@" || status=$?
fi

if [[ $status -ne 0 ]]; then
  echo "schemathesis.sh: schemathesis failed (exit $status); farm log:" >&2
  # A panic's message comes before its backtrace; show it first, then the end of the log.
  grep -m 3 -A 8 "panicked" "$FARM_LOG" >&2 || true
  tail -n 30 "$FARM_LOG" >&2
fi
exit "$status"
