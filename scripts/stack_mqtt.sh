# shellcheck shell=bash
# The device edge of scripts/stack.sh (EDGE=mqtt): Eclipse Mosquitto 2 brokers, one global and
# one per region in EDGE_REGIONS, standing for the IoT cores devices connect to (SPEC 8;
# docs/architecture.md, "The device edge"). Sourced by scripts/stack.sh; uses its helpers.
#
# Each broker: an MQTT 5 listener on 127.0.0.1 over TLS only (mqtts, the stack's CA and server
# certificate: scripts/stack_secure.sh's make_certs), anonymous access off, the
# dynamic-security plugin holding the device identities (one client and one role per device,
# created and deleted by the workers through the control API) plus two service users:
# `vprov-identity` (the control API only) and `vprov-edge` (the bridges: subscribe device/+/out,
# publish device/+/in). Persistence on (queued QoS 1 messages and sessions survive a restart;
# the identities are in dynamic-security.json, written on every change). Data, logs and the
# generated files in $RUN_DIR/mqtt/<scope>/; passwords and the devices' credential secret in
# $SECURE_DIR (mqtt-users, edge-credential-secret).
#
# Env: EDGE (mqtt: `up` starts the brokers), EDGE_REGIONS ("NA EU AP"), MQTT_PORT (8883, the
#      global broker), MQTT_PORT_<R> (NA, EU, AP: MQTT_PORT + 1, 2, 3; other regions required),
#      MQTT_START_TIMEOUT (30 s), MOSQUITTO (the broker binary).
# `down` stops every broker of the run directory, whatever EDGE says; `env` prints the edge
# settings (VPROV_IDENTITY=mosquitto, the endpoints, the users) while a broker runs.
# `mqtt start|stop|restart|status [SCOPE]` drives the brokers alone (SCOPE: global or a region).

EDGE=${EDGE:-}
case $EDGE in
    '' | none | mqtt) ;;
    *) printf '[stack] error: EDGE=%s: expected mqtt (or nothing)\n' "$EDGE" >&2; exit 2 ;;
esac
EDGE_REGIONS=${EDGE_REGIONS:-NA EU AP}
MQTT_PORT=${MQTT_PORT:-8883}
MQTT_DIR=$RUN_DIR/mqtt
MQTT_START_TIMEOUT=${MQTT_START_TIMEOUT:-30}
MQTT_ADMIN_USER=vprov-identity
MQTT_BRIDGE_USER=vprov-edge

edge_mqtt() { [[ $EDGE == mqtt ]]; }

mosquitto_bin() {
    local found
    if [[ -n ${MOSQUITTO:-} ]]; then echo "$MOSQUITTO"; return; fi
    found=$(command -v mosquitto 2>/dev/null) || found=/usr/sbin/mosquitto
    [[ -x $found ]] || die "mosquitto not found: install Eclipse Mosquitto 2 (Debian: apt-get install mosquitto; scripts/prereqs.sh does it as root)"
    echo "$found"
}

dynsec_plugin() {
    local found
    found=$(compgen -G '/usr/lib/*/mosquitto_dynamic_security.so' | head -n 1) ||
        found=$(compgen -G '/usr/lib/mosquitto_dynamic_security.so' | head -n 1) ||
        die "Mosquitto's dynamic-security plugin (mosquitto_dynamic_security.so) not found: install Debian's mosquitto package"
    echo "$found"
}

# The scopes to start: global and EDGE_REGIONS.
mqtt_scopes() { echo global $EDGE_REGIONS; }

# The scopes whose broker directory exists (started at least once), for down, status and env.
mqtt_known_scopes() {
    local conf
    for conf in "$MQTT_DIR"/*/mosquitto.conf; do
        [[ -f $conf ]] || continue
        conf=${conf%/mosquitto.conf}
        echo "${conf##*/}"
    done
}

mqtt_port() {
    local scope=$1 var
    if [[ $scope == global ]]; then echo "$MQTT_PORT"; return; fi
    var=MQTT_PORT_$scope
    if [[ -n ${!var:-} ]]; then echo "${!var}"; return; fi
    case $scope in
        NA) echo $((MQTT_PORT + 1)) ;; EU) echo $((MQTT_PORT + 2)) ;; AP) echo $((MQTT_PORT + 3)) ;;
        *) die "set $var: the port of region $scope's MQTT broker" ;;
    esac
}

# The port a broker was last started on (its directory records it), else the configured one.
mqtt_known_port() {
    if [[ -s $MQTT_DIR/$1/port ]]; then cat "$MQTT_DIR/$1/port"; else mqtt_port "$1"; fi
}

mqtt_pid() { our_pid "$MQTT_DIR/$1/mosquitto.pid" "-c $MQTT_DIR/$1/mosquitto.conf"; }

mqtt_check_ports() {
    local scope
    for scope in $(mqtt_scopes); do
        if ! mqtt_pid "$scope" >/dev/null; then
            if [[ $scope == global ]]; then
                check_port_free "$(mqtt_port global)" "mqtt global" MQTT_PORT
            else
                check_port_free "$(mqtt_port "$scope")" "mqtt $scope" "MQTT_PORT_$scope"
            fi
        fi
    done
}

# The password of service user $1 (made once).
mqtt_secret() { awk -v user="$1" '$1 == user {print $2}' "$SECURE_DIR/mqtt-users"; }

mqtt_prepare() {
    command -v openssl >/dev/null || die "openssl not found (Debian: apt-get install openssl)"
    command -v python3 >/dev/null || die "python3 not found"
    mkdir -p "$SECURE_DIR" "$MQTT_DIR"
    chmod 700 "$SECURE_DIR"
    make_certs  # the stack's CA and its certificate for 127.0.0.1 (scripts/stack_secure.sh)
    if [[ ! -s $SECURE_DIR/mqtt-users ]]; then
        printf '%s %s\n%s %s\n' "$MQTT_ADMIN_USER" "$(openssl rand -hex 16)" \
            "$MQTT_BRIDGE_USER" "$(openssl rand -hex 16)" >"$SECURE_DIR/mqtt-users"
    fi
    if [[ ! -s $SECURE_DIR/edge-credential-secret ]]; then
        openssl rand -hex 32 >"$SECURE_DIR/edge-credential-secret"
    fi
    chmod 600 "$SECURE_DIR/mqtt-users" "$SECURE_DIR/edge-credential-secret"
}

# The plugin's file before the broker's first start: the two service users and their roles,
# and the default access (publishing and subscribing denied unless a role allows it). Passwords
# as the plugin stores them: PBKDF2-SHA512, 101 iterations, a random salt.
write_dynsec_config() {
    local file=$1
    [[ -s $file ]] && return 0
    ADMIN_PASSWORD=$(mqtt_secret "$MQTT_ADMIN_USER") BRIDGE_PASSWORD=$(mqtt_secret "$MQTT_BRIDGE_USER") \
        ADMIN_USER=$MQTT_ADMIN_USER BRIDGE_USER=$MQTT_BRIDGE_USER python3 - "$file" <<'EOF'
import base64, hashlib, json, os, sys

def client(user, password, role):
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101)
    return {"username": user, "password": base64.b64encode(digest).decode(),
            "salt": base64.b64encode(salt).decode(), "iterations": 101,
            "roles": [{"rolename": role}]}

def acl(kind, topic):
    return {"acltype": kind, "topic": topic, "allow": True}

control = "$CONTROL/dynamic-security/#"
doc = {
    "clients": [client(os.environ["ADMIN_USER"], os.environ["ADMIN_PASSWORD"], "vprov-identity"),
                client(os.environ["BRIDGE_USER"], os.environ["BRIDGE_PASSWORD"], "vprov-edge")],
    "roles": [
        {"rolename": "vprov-identity", "textdescription": "the workers' identity registry",
         "acls": [acl("publishClientSend", control), acl("publishClientReceive", control),
                  acl("subscribePattern", control)]},
        {"rolename": "vprov-edge", "textdescription": "the edge bridges",
         "acls": [acl("subscribePattern", "device/+/out"),
                  acl("publishClientReceive", "device/+/out"),
                  acl("publishClientSend", "device/+/in")]},
    ],
    "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": True,
                         "subscribe": False, "unsubscribe": True},
}
with open(sys.argv[1], "w") as out:
    json.dump(doc, out, indent=1)
EOF
    chmod 600 "$file"
}

write_mosquitto_config() {
    local scope=$1 port=$2 dir=$MQTT_DIR/$1
    mkdir -p "$dir/data"
    cat >"$dir/mosquitto.conf" <<EOF
# Generated by scripts/stack.sh (EDGE=mqtt); edits are overwritten on the next start.
per_listener_settings false
allow_anonymous false
listener $port 127.0.0.1
protocol mqtt
# small packets (acknowledgements, control answers) go out at once, not after a delayed ACK
set_tcp_nodelay true
certfile $SECURE_DIR/server.pem
keyfile $SECURE_DIR/server.key
plugin $(dynsec_plugin)
plugin_opt_config_file $dir/dynamic-security.json
# sessions, subscriptions and queued QoS 1 messages survive a restart (saved at a clean stop
# and every autosave_interval seconds)
persistence true
persistence_location $dir/data/
autosave_interval 60
# a bridge that is down must find every device message waiting: no cap on its queue
max_queued_messages 0
log_dest file $dir/mosquitto.log
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
log_timestamp_format %Y-%m-%dT%H:%M:%S
# started as root, mosquitto would switch to the user "mosquitto", who cannot write here
user $(id -un)
EOF
}

# Starts the broker of scope $1, on port $2 (default: the configured one).
mqtt_start() {
    local scope=$1 pid port dir=$MQTT_DIR/$1 offset=0
    if pid=$(mqtt_pid "$scope"); then
        say "mqtt $scope already running (pid $pid, 127.0.0.1:$(mqtt_known_port "$scope"))"
        return 0
    fi
    port=${2:-$(mqtt_port "$scope")}
    check_port_free "$port" "mqtt $scope" "$([[ $scope == global ]] && echo MQTT_PORT || echo "MQTT_PORT_$scope")"
    mkdir -p "$dir"
    write_mosquitto_config "$scope" "$port"
    write_dynsec_config "$dir/dynamic-security.json"
    echo "$port" >"$dir/port"
    [[ -f $dir/mosquitto.log ]] && offset=$(stat -c %s "$dir/mosquitto.log")
    say "starting mqtt $scope on mqtts://127.0.0.1:$port"
    nohup setsid "$(mosquitto_bin)" -c "$dir/mosquitto.conf" </dev/null >>"$dir/stdout.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/mosquitto.pid"
    touch "$dir/mosquitto.log"
    wait_for_log "mqtt $scope" "$pid" "$dir/mosquitto.pid" "$dir/mosquitto.log" "$offset" \
        ' running' "$MQTT_START_TIMEOUT"
    say "mqtt $scope started (pid $pid, ${WAITED}s)"
}

mqtt_stop() {
    stop_service "mqtt $1" "$MQTT_DIR/$1/mosquitto.pid" "-c $MQTT_DIR/$1/mosquitto.conf"
}

# --- hooks of scripts/stack.sh -------------------------------------------------

mqtt_up() {
    local scope
    mqtt_prepare
    for scope in $(mqtt_scopes); do mqtt_start "$scope"; done
}

mqtt_down() {
    local scope
    for scope in $(mqtt_known_scopes); do
        if [[ -e $MQTT_DIR/$scope/mosquitto.pid ]]; then mqtt_stop "$scope"; fi
    done
}

# VPROV_RESET=1: the brokers' identities, sessions and queued messages go too.
mqtt_wipe() {
    local scope
    for scope in $(mqtt_known_scopes); do
        if mqtt_pid "$scope" >/dev/null; then mqtt_stop "$scope"; fi
    done
    rm -rf "$MQTT_DIR"
}

mqtt_status() {
    local scope pid
    for scope in $(mqtt_known_scopes); do
        if pid=$(mqtt_pid "$scope"); then
            say "mqtt $scope: running (pid $pid, mqtts://127.0.0.1:$(mqtt_known_port "$scope"), log $MQTT_DIR/$scope/mosquitto.log)"
        else
            say "mqtt $scope: not running"
        fi
    done
}

# The edge settings of the running brokers, for the workers, bridges and simulated devices.
mqtt_env() {
    local scope any=0
    for scope in $(mqtt_known_scopes); do
        mqtt_pid "$scope" >/dev/null || continue
        any=1
        if [[ $scope == global ]]; then
            echo "VPROV_EDGE_GLOBAL_ENDPOINT=mqtts://127.0.0.1:$(mqtt_known_port global)"
        else
            echo "VPROV_GATEWAY_ENDPOINT_$scope=mqtts://127.0.0.1:$(mqtt_known_port "$scope")"
        fi
    done
    ((any)) || return 0
    echo "VPROV_IDENTITY=mosquitto"
    echo "VPROV_EDGE_CA_LOCATION=$SECURE_DIR/ca.pem"
    echo "VPROV_EDGE_ADMIN_USERNAME=$MQTT_ADMIN_USER"
    echo "VPROV_EDGE_ADMIN_PASSWORD=$(mqtt_secret "$MQTT_ADMIN_USER")"
    echo "VPROV_EDGE_BRIDGE_USERNAME=$MQTT_BRIDGE_USER"
    echo "VPROV_EDGE_BRIDGE_PASSWORD=$(mqtt_secret "$MQTT_BRIDGE_USER")"
    echo "VPROV_EDGE_CREDENTIAL_SECRET=$(<"$SECURE_DIR/edge-credential-secret")"
}

cmd_mqtt() {
    local action=${1:-} scope=${2:-} scopes port
    if [[ -n $scope ]]; then scopes=$scope; else scopes=$(mqtt_scopes); fi
    case $action in
        start) mqtt_prepare; for scope in $scopes; do mqtt_start "$scope"; done ;;
        stop) for scope in $scopes; do mqtt_stop "$scope"; done ;;
        restart)  # on the port it had
            mqtt_prepare
            for scope in $scopes; do
                port=$(mqtt_known_port "$scope")
                mqtt_stop "$scope"
                mqtt_start "$scope" "$port"
            done
            ;;
        status) mqtt_status ;;
        *) die "usage: [EDGE_REGIONS=...] $0 mqtt start|stop|restart|status [global|REGION]" ;;
    esac
}
