#!/usr/bin/env bash
# End-to-end demo: local stack, one global worker and one per configured region (the layout
# `vprov config workers` prints), then a simulated fleet.
# Workers and the stack are always stopped at the end. Exits with the simulator's status.
# Then a few vehicles go through the operations after their first boot (replaced devices, moves,
# decommissioning; python -m vprov.sim.after_boot_demo), audited with `vprov replay --verify`.
# Prints where each worker serves its Prometheus metrics, and the request funnel read from them.
# Env: VEHICLES (1000), RATE (80 vehicles/s offered), KEEP (set: leave everything running
# until Ctrl-C, to try `vprov status` and `vprov replay`), WORKER_START_TIMEOUT (120 s),
# VPROV (the vprov command), VPROV_CONFIG (the configuration), DRY_RUN (set: print the workers
# it would start, start nothing), WORKERS (1: workers per role; each role is one consumer group,
# its further workers listen on the web port + 100, + 200, ...), EDGE (mqtt: the stack's
# Mosquitto brokers hold the device identities, an edge bridge per broker links it to Kafka, and
# the simulated devices speak MQTT), SIM_TIMEOUT (seconds the simulation may take: 120, 600 with
# EDGE=mqtt).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
RUN_DIR=${VPROV_RUN_DIR:-$ROOT/.run}
[[ $RUN_DIR == /* ]] || RUN_DIR=$ROOT/$RUN_DIR
WORKERS_DIR=$RUN_DIR/workers
VPROV=${VPROV:-$ROOT/.venv/bin/vprov}
WORKER_START_TIMEOUT=${WORKER_START_TIMEOUT:-120}

say() { printf '[demo] %s\n' "$*"; }

declare -A worker_pid=()

# shellcheck disable=SC2317  # runs from the EXIT trap
stop_workers() {
    local name pid waited=0
    for name in "${!worker_pid[@]}"; do
        kill -TERM "${worker_pid[$name]}" 2>/dev/null || true
    done
    for name in "${!worker_pid[@]}"; do
        pid=${worker_pid[$name]}
        while kill -0 "$pid" 2>/dev/null && ((waited < 20)); do
            sleep 1
            waited=$((waited + 1))
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "$name did not stop within 20s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    worker_pid=()
}

# shellcheck disable=SC2317  # runs from the EXIT trap
cleanup() {
    ((${#worker_pid[@]} == 0)) || say "stopping workers"
    stop_workers
    scripts/stack.sh down
}

# True when GET /health answers HTTP 200 (plain bash, no curl needed).
health_ok() {
    local port=$1 line
    exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
    printf 'GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
    IFS= read -r -t 5 line <&3 || line=
    # Drain the rest so the server sees an orderly close.
    while IFS= read -r -t 5 _ <&3; do :; done
    exec 3<&-
    [[ $line =~ ^HTTP/1\.[01]\ 200 ]]
}

start_worker() {
    local name=$1 port=$2
    shift 2
    local dir=$WORKERS_DIR/$name
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        say "port $port is already in use (a worker left from an earlier run?)"
        return 1
    fi
    mkdir -p "$dir"
    say "starting $name worker (web port $port, log $dir/worker.log)"
    # Own working directory: each worker keeps its local table state there; on a secured
    # stack, its role's own credentials.
    (role_env "$@" && cd "$dir" && exec "$VPROV" worker "$@" --web-port "$port") \
        </dev/null >"$dir/worker.log" 2>&1 &
    worker_pid[$name]=$!
}

# SECURITY=sasl_ssl: export the credentials of the worker's role (worker options in "$@").
role_env() {
    [[ ${SECURITY:-plaintext} == sasl_ssl ]] || return 0
    local role=global
    [[ " $* " =~ \ --region\ ([A-Z0-9]+)\  ]] && role=regional-${BASH_REMATCH[1]}
    eval "$("$ROOT/scripts/stack.sh" env "$role")"
}

wait_healthy() {
    local name=$1 port=$2 waited=0
    local log=$WORKERS_DIR/$name/worker.log
    until health_ok "$port" 2>/dev/null; do
        if ! kill -0 "${worker_pid[$name]}" 2>/dev/null; then
            tail -n 40 "$log" >&2
            say "$name worker exited during startup; log: $log"
            return 1
        fi
        if ((waited >= WORKER_START_TIMEOUT)); then
            tail -n 40 "$log" >&2
            say "$name worker not healthy within ${WORKER_START_TIMEOUT}s; log: $log"
            return 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    say "$name worker healthy on http://127.0.0.1:$port/health, metrics on http://127.0.0.1:$port/metrics"
}

# EDGE=mqtt: `vprov edge --scope SCOPE`, one per broker, stopped with the workers.
start_bridge() {
    local scope=$1 dir=$WORKERS_DIR/edge-$1
    mkdir -p "$dir"
    say "starting the $scope edge bridge (log $dir/edge.log)"
    (cd "$dir" && exec "$VPROV" edge --scope "$scope") </dev/null >"$dir/edge.log" 2>&1 &
    worker_pid[edge-$scope]=$!
}

wait_bridge() {
    local scope=$1 waited=0 log=$WORKERS_DIR/edge-$1/edge.log
    until grep -qF "edge bridge $scope: device/+/out" "$log" 2>/dev/null; do
        if ! kill -0 "${worker_pid[edge-$scope]}" 2>/dev/null ||
            ((waited >= WORKER_START_TIMEOUT)); then
            tail -n 20 "$log" >&2
            say "the $scope edge bridge did not start; log: $log"
            return 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    say "$scope edge bridge: $(grep -F "edge bridge $scope: device/+/out" "$log" | tail -n 1 |
        sed 's/.*edge bridge [^:]*: //')"
}

[[ -n ${DRY_RUN:-} ]] || make --no-print-directory setup
# One line per worker: name, web port, `vprov worker` options.
layout=$("$VPROV" config workers)
WORKERS=${WORKERS:-1}
if ! [[ $WORKERS =~ ^[1-9]$ ]]; then
    say "WORKERS=$WORKERS: expected the workers per role, 1 to 9"
    exit 2
fi
# further workers of each role: the same options, their own web port and state directory
replicas=""
for ((k = 2; k <= WORKERS; k++)); do
    while read -r name port args; do
        replicas+="$name-$k $((port + 100 * (k - 1))) $args"$'\n'
    done <<<"$layout"
done
layout+=$'\n'"${replicas%$'\n'}"
layout=$(sed '/^$/d' <<<"$layout")
if [[ -n ${DRY_RUN:-} ]]; then
    printf '%s\n' "$layout"
    exit 0
fi

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if [[ ${EDGE:-} == mqtt ]]; then
    # a broker per configured region, besides the global one
    EDGE_REGIONS=${EDGE_REGIONS:-$("$VPROV" config regions | tr '\n' ' ')}
    export EDGE_REGIONS
fi
scripts/stack.sh up
eval "$(scripts/stack.sh env)"

while read -r name port args; do
    # shellcheck disable=SC2086  # the options are words
    start_worker "$name" "$port" $args
done <<<"$layout"
while read -r name port _; do
    wait_healthy "$name" "$port"
done <<<"$layout"

via=kafka
timeout=${SIM_TIMEOUT:-120}
if [[ ${EDGE:-} == mqtt ]]; then
    via=mqtt
    # the brokers' identity writes pace registration and provisioning (docs/operations.md)
    timeout=${SIM_TIMEOUT:-600}
    for scope in global $EDGE_REGIONS; do
        start_bridge "$scope"
    done
    for scope in global $EDGE_REGIONS; do
        wait_bridge "$scope"
    done
fi

say "simulating ${VEHICLES:-1000} vehicles at ${RATE:-80} vehicles/s (devices via $via)"
status=0
"$VPROV" simulate --vehicles "${VEHICLES:-1000}" --rate "${RATE:-80}" --via "$via" \
    --timeout "$timeout" || status=$?
say "after the first boot: devices replaced, vehicles moved and decommissioned"
"$ROOT/.venv/bin/python" -m vprov.sim.after_boot_demo --global-url "http://127.0.0.1:$(
    awk '$1 == "global" {print $2}' <<<"$layout")" || status=$?
say "Prometheus metrics (GET /metrics) of each worker:"
urls=()
while read -r name port _; do
    say "  $name: http://127.0.0.1:$port/metrics"
    urls+=("http://127.0.0.1:$port")
done <<<"$layout"
say "the request funnel, from those pages:"
"$ROOT/.venv/bin/python" -m vprov.ops.funnel "${urls[@]}" || true
if [[ -n ${KEEP:-} ]]; then
    say "KEEP is set: the stack and the workers stay up; try the commands above"
    say "stop them with Ctrl-C"
    wait
fi
exit "$status"
