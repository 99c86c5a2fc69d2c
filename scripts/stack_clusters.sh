# shellcheck shell=bash
# The multi-cluster topology of scripts/stack.sh (TOPOLOGY=clusters): the stack's broker is the
# global cluster; each region in CLUSTER_REGIONS gets a single-node KRaft cluster of its own, and
# one MirrorMaker 2 (dedicated mode) links them with the configuration `vprov mirror config`
# generates from the topic catalogue (docs/operations.md, "Multi-cluster topology").
#
# Env: TOPOLOGY (single | clusters), CLUSTER_REGIONS ("NA EU AP"), KAFKA_PORT_<R> (NA 9192,
#      EU 9292, AP 9392, other regions required), KAFKA_CONTROLLER_PORT_<R> (the next port),
#      VPROV_CONFIG (the configuration MirrorMaker's topics come from; default: the packaged one).
# Sourced by scripts/stack.sh; uses its helpers and variables.

TOPOLOGY=${TOPOLOGY:-single}
[[ $TOPOLOGY == multi ]] && TOPOLOGY=clusters  # the same, by the name the design notes use
case $TOPOLOGY in
    single | clusters) ;;
    *) printf '[stack] error: TOPOLOGY=%s: expected single or clusters (or multi)\n' "$TOPOLOGY" >&2; exit 2 ;;
esac
CLUSTER_REGIONS=${CLUSTER_REGIONS:-NA EU AP}
CLUSTERS_DIR=$RUN_DIR/clusters
MIRROR_DIR=$RUN_DIR/mirror
MIRROR_PID=$MIRROR_DIR/mirror.pid
MIRROR_LOG=$MIRROR_DIR/mirror.log
MIRROR_LIBS=$KAFKA_HOME/mirror-libs
MIRROR_CLASS=org.apache.kafka.connect.mirror.MirrorMaker
MIRROR_START_TIMEOUT=${MIRROR_START_TIMEOUT:-120}
REGION_KAFKA_HEAP="-Xms64m -Xmx192m"

clustered() { [[ $TOPOLOGY == clusters ]]; }

region_port() {
    local var=KAFKA_PORT_$1
    if [[ -n ${!var:-} ]]; then echo "${!var}"; return; fi
    case $1 in
        NA) echo 9192 ;; EU) echo 9292 ;; AP) echo 9392 ;;
        *) die "set $var: the port of region $1's cluster" ;;
    esac
}

region_controller_port() {
    local var=KAFKA_CONTROLLER_PORT_$1
    echo "${!var:-$(($(region_port "$1") + 1))}"
}

# Runs "$@" with the broker variables of region $1's cluster (bash scoping: the stack's
# functions called from here see these locals).
as_region() {
    local region=$1
    shift
    local KAFKA_DIR=$CLUSTERS_DIR/$region/kafka
    local KAFKA_PORT KAFKA_CONTROLLER_PORT
    KAFKA_PORT=$(region_port "$region")
    KAFKA_CONTROLLER_PORT=$(region_controller_port "$region")
    local KAFKA_PID=$KAFKA_DIR/kafka.pid KAFKA_LOG=$KAFKA_DIR/kafka.log
    local KAFKA_HEAP=$REGION_KAFKA_HEAP
    local SECURITY=plaintext  # the local regional clusters are plaintext, even on a secured stack
    local BROKERS=1 KAFKA_NODE_ID=1 KAFKA_CLUSTER_ID_FILE=$KAFKA_DIR/cluster.id  # single-node
    "$@"
}



clusters_check_ports() {
    local region
    for region in $CLUSTER_REGIONS; do
        if ! as_region "$region" kafka_pid >/dev/null; then
            check_port_free "$(region_port "$region")" "kafka $region" "KAFKA_PORT_$region"
            check_port_free "$(region_controller_port "$region")" "kafka $region controller" \
                "KAFKA_CONTROLLER_PORT_$region"
        fi
    done
}

# VPROV_RESET=1: the regional clusters' data and MirrorMaker's go too, whatever TOPOLOGY says
# (test runs leave their topics there, and a -Xmx192m broker does not hold them all), unless a
# regional broker still runs.
clusters_wipe() {
    local dir region
    for dir in "$CLUSTERS_DIR"/*/; do
        dir=${dir%/}
        [[ -d $dir ]] || continue
        region=$(basename "$dir")
        if our_pid "$dir/kafka/kafka.pid" "kafka.Kafka $dir/kafka/server.properties" \
            >/dev/null; then
            say "kafka $region is running: its data is kept (stop it with TOPOLOGY=clusters)"
            return 0
        fi
    done
    rm -rf "$CLUSTERS_DIR" "$MIRROR_DIR"
}

# --- MirrorMaker 2 -----------------------------------------------------------

fetch_mirror() {
    [[ -f $MIRROR_LIBS/.complete ]] && return 0
    command -v mvn >/dev/null || die "mvn not found: it fetches the MirrorMaker jars once (Debian: apt-get install maven)"
    say "fetching MirrorMaker 2 ($KAFKA_VERSION) jars into $MIRROR_LIBS (once)"
    local tmp=$MIRROR_LIBS.tmp.$$
    rm -rf "$tmp" "$MIRROR_LIBS"
    mkdir -p "$tmp" "$KAFKA_HOME"
    if ! mvn -B -ntp -f "$ROOT/docker/mirror-pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$tmp" -DincludeScope=runtime >"$KAFKA_HOME/mirror-mvn.log" 2>&1; then
        tail -n 40 "$KAFKA_HOME/mirror-mvn.log" >&2
        rm -rf "$tmp"
        die "fetching the MirrorMaker jars with Maven failed; full log: $KAFKA_HOME/mirror-mvn.log"
    fi
    mv "$tmp" "$MIRROR_LIBS"
    touch "$MIRROR_LIBS/.complete"
}

mirror_pid() { our_pid "$MIRROR_PID" "$MIRROR_CLASS $MIRROR_DIR/mm2.properties"; }

# The environment every `vprov` command of the clustered stack runs with: each region's
# cluster, unless the caller named it already.
clusters_env() {
    echo "KAFKA_BOOTSTRAP_SERVERS=${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:$KAFKA_PORT}"
    local region var
    for region in $CLUSTER_REGIONS; do
        var=KAFKA_BOOTSTRAP_SERVERS_$region
        echo "$var=${!var:-127.0.0.1:$(region_port "$region")}"
    done
}

vprov_clustered() {
    local vprov=$ROOT/.venv/bin/vprov
    [[ -x $vprov ]] || die "$vprov not found: run 'make setup' first"
    env $(clusters_env) "$vprov" "$@"
}

# Starts MirrorMaker with the configuration generated now; a MirrorMaker running with another
# one (a test deployment's topic names) is restarted.
mirror_start() {
    local pid
    fetch_mirror
    mkdir -p "$MIRROR_DIR"
    # every topic on every cluster it lives on, with equal partition counts, before the link
    # starts: MirrorMaker copies the partition number, it does not hash the key again
    vprov_clustered topics create >"$MIRROR_DIR/topics.out" ||
        { cat "$MIRROR_DIR/topics.out" >&2; die "creating the topics failed"; }
    vprov_clustered mirror config -o "$MIRROR_DIR/mm2.properties.new" ||
        die "generating the MirrorMaker configuration failed"
    if pid=$(mirror_pid); then
        if cmp -s "$MIRROR_DIR/mm2.properties.new" "$MIRROR_DIR/mm2.properties"; then
            rm -f "$MIRROR_DIR/mm2.properties.new"
            say "mirrormaker already running (pid $pid)"
            return 0
        fi
        say "mirrormaker runs with another configuration: restarting it"
        mirror_stop
    fi
    mv "$MIRROR_DIR/mm2.properties.new" "$MIRROR_DIR/mm2.properties"
    cat >"$MIRROR_DIR/log4j.properties" <<EOF2
# Generated by scripts/stack.sh: INFO to mirror.log only.
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$MIRROR_LOG
log4j.appender.file.Append=true
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.org.apache.kafka.clients=WARN
log4j.logger.org.apache.kafka.common.config=WARN
log4j.logger.org.reflections=ERROR
EOF2
    local offset=0
    [[ -f $MIRROR_LOG ]] && offset=$(stat -c %s "$MIRROR_LOG")
    say "starting mirrormaker ($MIRROR_DIR/mm2.properties)"
    nohup setsid java -Xms64m -Xmx256m -Djava.awt.headless=true \
        "-Dlog4j.configuration=file:$MIRROR_DIR/log4j.properties" \
        -cp "$MIRROR_LIBS/*" "$MIRROR_CLASS" "$MIRROR_DIR/mm2.properties" \
        </dev/null >>"$MIRROR_LOG" 2>&1 &
    pid=$!
    echo "$pid" >"$MIRROR_PID"
    wait_for_log mirrormaker "$pid" "$MIRROR_PID" "$MIRROR_LOG" "$offset" \
        'Kafka MirrorMaker started' "$MIRROR_START_TIMEOUT"
    mirror_wait_replicating "$pid" "$offset" "$WAITED"
}

# "MirrorMaker started" comes before its tasks copy anything: wait until each pair of clusters
# replicates its topics of this configuration (a MirrorMaker restarted with another one first
# resumes the topics it had).
mirror_wait_replicating() {
    local pid=$1 offset=$2 waited=$3 pair topic pending
    while :; do
        pending=""
        while IFS= read -r line; do
            pair=${line%%.topics = *}
            topic=${line#*.topics = }
            topic=${topic%%,*}
            topic=${topic//\\/}  # the regex escapes of the generated file
            if ! tail -c +"$((offset + 1))" "$MIRROR_LOG" | grep -F "topic-partitions $pair: " |
                tail -n 1 | grep -qF "$topic-"; then
                pending="$pending $pair"
            fi
        done < <(grep -E '^[^#].*->.*\.topics = ' "$MIRROR_DIR/mm2.properties")
        [[ -z $pending ]] && break
        if ! proc_cmdline "$pid" >/dev/null; then
            tail -n 40 "$MIRROR_LOG" >&2
            rm -f "$MIRROR_PID"
            die "mirrormaker exited during startup; log: $MIRROR_LOG"
        fi
        if ((waited >= MIRROR_START_TIMEOUT)); then
            die "mirrormaker does not replicate$pending after ${MIRROR_START_TIMEOUT}s; log: $MIRROR_LOG"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    say "mirrormaker started (pid $pid, replicating after ${waited}s)"
}

mirror_stop() {
    stop_service mirrormaker "$MIRROR_PID" "$MIRROR_CLASS $MIRROR_DIR/mm2.properties"
}

# --- hooks of scripts/stack.sh -------------------------------------------------

clusters_up() {
    local region
    for region in $CLUSTER_REGIONS; do
        as_region "$region" start_kafka
    done
    mirror_start
}

# MirrorMaker first: stopped after the brokers, it would retry against them for a long time.
clusters_down() {
    mirror_stop
    local region
    for region in $CLUSTER_REGIONS; do
        as_region "$region" stop_service "kafka $region" "$CLUSTERS_DIR/$region/kafka/kafka.pid" \
            "kafka.Kafka $CLUSTERS_DIR/$region/kafka/server.properties"
    done
}

clusters_status() {
    local region pid
    for region in $CLUSTER_REGIONS; do
        if pid=$(as_region "$region" kafka_pid); then
            say "kafka $region: running (pid $pid, 127.0.0.1:$(region_port "$region"))"
        else
            say "kafka $region: not running"
        fi
    done
    if pid=$(mirror_pid); then
        say "mirrormaker: running (pid $pid, log $MIRROR_LOG)"
    else
        say "mirrormaker: not running"
    fi
}

cmd_mirror() {
    clustered || die "mirror: only with TOPOLOGY=clusters"
    case ${1:-} in
        start) mirror_start ;;
        stop) mirror_stop ;;
        restart) mirror_stop; mirror_start ;;
        *) die "usage: TOPOLOGY=clusters $0 mirror start|stop|restart" ;;
    esac
}
