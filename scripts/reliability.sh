#!/usr/bin/env bash
# The long reliability suite on a fresh local stack, then docs/reliability.md from its figures.
# Sizes: RELIABILITY_VEHICLES (2000), RELIABILITY_HOSTILE (50000), RELIABILITY_KILLS (3),
# RELIABILITY_REGISTRATION_RUNS (10: runs of the registration crash scenario, a fresh fleet each).
# BROKERS=3: on three brokers, with the scenarios that lose or restart one
# (tests/reliability/test_brokers.py); figures to docs/reliability-3-brokers.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export RELIABILITY_VEHICLES=${RELIABILITY_VEHICLES:-2000}
export RELIABILITY_HOSTILE=${RELIABILITY_HOSTILE:-50000}
export RELIABILITY_KILLS=${RELIABILITY_KILLS:-3}
export RELIABILITY_REGISTRATION_RUNS=${RELIABILITY_REGISTRATION_RUNS:-10}
# the scenarios `make test` leaves out (tests/reliability/conftest.py, LONG_ONLY)
export RELIABILITY_LONG=1
make --no-print-directory setup
trap 'scripts/stack.sh down' EXIT
VPROV_RESET=1 scripts/stack.sh up
eval "$(scripts/stack.sh env)"

# beside the stack's data: a second stack (VPROV_RUN_DIR) keeps figures of its own
run_dir=${VPROV_RUN_DIR:-.run}
mkdir -p "$run_dir"
RELIABILITY_REPORT=$(cd "$run_dir" && pwd)/reliability.jsonl
export RELIABILITY_REPORT
rm -f "$RELIABILITY_REPORT"
status=0
.venv/bin/python -m pytest tests/reliability -v "$@" || status=$?
brokers=${BROKERS:-1} page=docs/reliability.md option=""
if [[ $brokers != 1 ]]; then page=docs/reliability-$brokers-brokers.md option=" BROKERS=$brokers"; fi
sizes="RELIABILITY_VEHICLES=$RELIABILITY_VEHICLES RELIABILITY_HOSTILE=$RELIABILITY_HOSTILE RELIABILITY_KILLS=$RELIABILITY_KILLS RELIABILITY_REGISTRATION_RUNS=$RELIABILITY_REGISTRATION_RUNS"
# the page names the command that gives its figures: pytest's arguments select scenarios
command="$sizes make reliability$option"
if (($#)); then command="${option# }${option:+ }$sizes scripts/reliability.sh $*"; fi
if [[ -s $RELIABILITY_REPORT ]]; then
    .venv/bin/python -m tests.reliability.report "$RELIABILITY_REPORT" "$command" \
        "$brokers" >"$page"
    echo "figures written to $page"
fi
exit "$status"
