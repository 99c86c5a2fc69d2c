#!/usr/bin/env bash
# The system tools the local stack and the test suite need, in one place: `make up`, `make test`,
# `make demo`, `make bench` and CI run this first.
#
# Run as root on Debian or Ubuntu it installs what is missing with apt-get. Anywhere else it
# prints one line per missing tool with the command that installs it, and exits 1.
#   VPROV_PREREQS_INSTALL=0   only check, never install (also as root)
#   VPROV_PREREQS_EXTRA="..." more Debian packages to require (CI adds docker-compose)
set -euo pipefail

missing=()  # "package|what is missing"
need() {  # need PACKAGE DESCRIPTION COMMAND...: missing when one of the commands is not found
    local package=$1 what=$2
    shift 2
    local cmd
    for cmd in "$@"; do
        if ! command -v "$cmd" >/dev/null 2>&1; then
            missing+=("$package|$what")
            return
        fi
    done
}

need make "make" make
need redis-server "redis-server and redis-cli (Redis 6+)" redis-server redis-cli
need default-jdk-headless "java (a JDK 17+, for the Kafka broker)" java
need maven "mvn (Maven, fetches the Kafka jars)" mvn
need prometheus "prometheus and promtool (the alert rules' tests)" prometheus promtool
# Eclipse Mosquitto 2 with its dynamic-security plugin: the IoT brokers of EDGE=mqtt and of
# tests/integration/test_edge_mqtt.py (the broker is in /usr/sbin, off a user's PATH)
if ! { command -v mosquitto >/dev/null 2>&1 || [[ -x /usr/sbin/mosquitto ]]; } ||
    ! compgen -G '/usr/lib/*/mosquitto_dynamic_security.so' >/dev/null; then
    missing+=("mosquitto|mosquitto (Eclipse Mosquitto 2 and its dynamic-security plugin)")
fi
if ! command -v python3 >/dev/null 2>&1; then
    missing+=("python3|python3 (3.11+)")
else
    probe=$(mktemp -d)
    python3 -m venv "$probe/venv" >/dev/null 2>&1 || missing+=("python3-venv|python3's venv module")
    rm -rf "$probe"
fi
for package in ${VPROV_PREREQS_EXTRA:-}; do
    case $package in
        docker-compose) command -v docker-compose >/dev/null 2>&1 \
            || docker compose version >/dev/null 2>&1 \
            || missing+=("docker-compose|a compose client (docker compose or docker-compose)") ;;
        *) dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package|$package") ;;
    esac
done

((${#missing[@]} == 0)) && exit 0

packages=()
for item in "${missing[@]}"; do packages+=("${item%%|*}"); done

if [[ ${VPROV_PREREQS_INSTALL:-1} != 0 && $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "[prereqs] installing: ${packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${packages[@]}"
    # Debian's prometheus package enables and starts a server on port 9090, where
    # docker/compose.yaml publishes its own; the tests start theirs on ports of their own and
    # need only the binaries, so the service installed here is stopped and disabled.
    if [[ " ${packages[*]} " == *" prometheus "* ]]; then
        if [[ -d /run/systemd/system ]]; then
            systemctl disable --now prometheus.service >/dev/null 2>&1 || true
        elif [[ -x /etc/init.d/prometheus ]]; then
            invoke-rc.d prometheus stop >/dev/null 2>&1 || true
            update-rc.d prometheus disable >/dev/null 2>&1 || true
        fi
        echo "[prereqs] the prometheus service Debian starts is stopped and disabled" \
             "(the tests start their own server)"
    fi
    # likewise the mosquitto service (port 1883): the stack starts brokers of its own
    if [[ " ${packages[*]} " == *" mosquitto "* ]]; then
        if [[ -d /run/systemd/system ]]; then
            systemctl disable --now mosquitto.service >/dev/null 2>&1 || true
        elif [[ -x /etc/init.d/mosquitto ]]; then
            invoke-rc.d mosquitto stop >/dev/null 2>&1 || true
            update-rc.d mosquitto disable >/dev/null 2>&1 || true
        fi
        echo "[prereqs] the mosquitto service Debian starts is stopped and disabled" \
             "(the stack starts its own brokers)"
    fi
    exit 0
fi

for item in "${missing[@]}"; do
    echo "missing: ${item#*|}; install it with: sudo apt-get install ${item%%|*}" \
         "(or your system's package of it)" >&2
done
exit 1
