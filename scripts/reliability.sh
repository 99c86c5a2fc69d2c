#!/usr/bin/env bash
# The long reliability suite on a fresh local stack, then docs/reliability.md from its figures.
# Sizes: RELIABILITY_VEHICLES (2000), RELIABILITY_HOSTILE (50000), RELIABILITY_KILLS (3),
# RELIABILITY_REGISTRATION_RUNS (10: runs of the registration crash scenario, a fresh fleet each).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export RELIABILITY_VEHICLES=${RELIABILITY_VEHICLES:-2000}
export RELIABILITY_HOSTILE=${RELIABILITY_HOSTILE:-50000}
export RELIABILITY_KILLS=${RELIABILITY_KILLS:-3}
export RELIABILITY_REGISTRATION_RUNS=${RELIABILITY_REGISTRATION_RUNS:-10}
make --no-print-directory setup
trap 'scripts/stack.sh down' EXIT
VPROV_RESET=1 scripts/stack.sh up
eval "$(scripts/stack.sh env)"

mkdir -p .run
export RELIABILITY_REPORT=$PWD/.run/reliability.jsonl
rm -f "$RELIABILITY_REPORT"
status=0
.venv/bin/python -m pytest tests/reliability -v "$@" || status=$?
if [[ -s $RELIABILITY_REPORT ]]; then
    .venv/bin/python -m tests.reliability.report "$RELIABILITY_REPORT" \
        "RELIABILITY_VEHICLES=$RELIABILITY_VEHICLES RELIABILITY_HOSTILE=$RELIABILITY_HOSTILE RELIABILITY_KILLS=$RELIABILITY_KILLS RELIABILITY_REGISTRATION_RUNS=$RELIABILITY_REGISTRATION_RUNS make reliability" \
        >docs/reliability.md
    echo "figures written to docs/reliability.md"
fi
exit "$status"
