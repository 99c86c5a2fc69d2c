# shellcheck shell=bash
# The secured variant of scripts/stack.sh (SECURITY=sasl_ssl), sourced by it; docs/security.md.
#
# Kafka: a SASL_SSL listener (SCRAM-SHA-512) for clients and the broker itself, the controller
# listener on SASL_PLAINTEXT with PLAIN (KRaft's controller cannot use SCRAM), StandardAuthorizer
# with `admin` as the only super user and the ACLs of `vprov acls` for everyone else.
# Redis: TLS only, `default` user off, an `admin` user and the application user `vprov`.
# A CA, a certificate for 127.0.0.1 and one password per user are made once, in $SECURE_DIR.

SECURE_DIR=$RUN_DIR/secrets
VPROV_BIN=${VPROV:-$ROOT/.venv/bin/vprov}

secured() { [[ $SECURITY == sasl_ssl ]]; }

# `redis-cli` as the admin (TLS and a password on a secured stack).
redis_cli() {
    if secured; then
        REDISCLI_AUTH=$(secret redis-users admin) redis-cli --tls --cacert "$SECURE_DIR/ca.pem" \
            -h 127.0.0.1 -p "$REDIS_PORT" --user admin "$@"
    else
        redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"
    fi
}

# The password of user $2 in file $1 of $SECURE_DIR.
secret() {
    awk -v user="$2" '$1 == user {print $2; found=1} END {exit !found}' "$SECURE_DIR/$1"
}

make_certs() {
    local d=$SECURE_DIR
    [[ -s $d/ca.pem && -s $d/server.pem && -s $d/broker-keystore.pem ]] && return 0
    command -v openssl >/dev/null || die "openssl not found (Debian: apt-get install openssl)"
    say "making a local CA and a certificate for 127.0.0.1 in $d"
    cat >"$d/ca.ext" <<EOF
basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
EOF
    cat >"$d/server.ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOF
    {
        openssl req -new -newkey rsa:2048 -nodes -subj "/CN=vprov local CA" \
            -keyout "$d/ca.key" -out "$d/ca.csr" &&
            openssl x509 -req -in "$d/ca.csr" -signkey "$d/ca.key" -days 825 -sha256 \
                -extfile "$d/ca.ext" -out "$d/ca.pem" &&
            openssl req -new -newkey rsa:2048 -nodes -subj "/CN=localhost" \
                -keyout "$d/server.key" -out "$d/server.csr" &&
            openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
                -CAcreateserial -days 825 -sha256 -extfile "$d/server.ext" -out "$d/server.pem"
    } >"$d/openssl.log" 2>&1 || die "making the certificates failed; log: $d/openssl.log"
    # Kafka's PEM key store: the unencrypted PKCS#8 key, then the certificate
    cat "$d/server.key" "$d/server.pem" >"$d/broker-keystore.pem"
    chmod 600 "$d"/*.key "$d/broker-keystore.pem"
}

# One password per Kafka user (admin and a principal per role) and per Redis user.
make_users() {
    local principals name
    if [[ ! -s $SECURE_DIR/kafka-users ]]; then
        [[ -x $VPROV_BIN ]] || die "$VPROV_BIN not found: run make setup (the principals come from 'vprov acls')"
        principals=$("$VPROV_BIN" acls --principals) || die "'vprov acls --principals' failed"
        for name in admin $principals; do
            echo "$name $(openssl rand -hex 16)"
        done >"$SECURE_DIR/kafka-users"
    fi
    if [[ ! -s $SECURE_DIR/redis-users ]]; then
        printf 'admin %s\nvprov %s\n' "$(openssl rand -hex 16)" "$(openssl rand -hex 16)" \
            >"$SECURE_DIR/redis-users"
    fi
    chmod 600 "$SECURE_DIR/kafka-users" "$SECURE_DIR/redis-users"
}

secure_prepare() {
    mkdir -p "$SECURE_DIR"
    chmod 700 "$SECURE_DIR"
    make_certs
    make_users
    local name password
    FORMAT_ARGS=()
    while read -r name password; do
        FORMAT_ARGS+=(--add-scram "SCRAM-SHA-512=[name=$name,password=$password]")
    done <"$SECURE_DIR/kafka-users"
    # for Kafka's own command-line tools: --command-config $SECURE_DIR/admin.properties
    cat >"$SECURE_DIR/admin.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(secret kafka-users admin)";
ssl.truststore.type=PEM
ssl.truststore.location=$SECURE_DIR/ca.pem
EOF
    chmod 600 "$SECURE_DIR/admin.properties"
}

# Appended to server.properties: a later key replaces an earlier one.
secure_kafka_config() {
    local admin_password
    admin_password=$(secret kafka-users admin)
    cat >>"$KAFKA_DIR/server.properties" <<EOF

# --- SECURITY=sasl_ssl ---
listeners=SASL_SSL://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=SASL_SSL://127.0.0.1:$KAFKA_PORT
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin_password";
# KRaft's controller listener cannot use SCRAM (its credentials live in the metadata it serves)
listener.name.controller.sasl.enabled.mechanisms=PLAIN
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="$admin_password" user_admin="$admin_password";
ssl.keystore.type=PEM
ssl.keystore.location=$SECURE_DIR/broker-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$SECURE_DIR/ca.pem
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
# the broker and controller authenticate as admin: without it here the broker never starts
super.users=User:admin
allow.everyone.if.no.acl.found=false
EOF
}

secure_redis_config() {
    cat <<EOF

# --- SECURITY=sasl_ssl ---
port 0
tls-port $REDIS_PORT
tls-cert-file $SECURE_DIR/server.pem
tls-key-file $SECURE_DIR/server.key
tls-ca-cert-file $SECURE_DIR/ca.pem
tls-auth-clients no
user default off
user admin on >$(secret redis-users admin) ~* &* +@all
# the workers' identity registry: its keys, no FLUSHALL, CONFIG, DEBUG or KEYS
user vprov on >$(secret redis-users vprov) ~vprov:* +@read +@write +@connection -@dangerous
EOF
}

secure_apply_acls() {
    say "applying the ACLs of each role (vprov acls --apply; list in $RUN_DIR/acls.txt)"
    (
        eval "$(print_secure_env admin | sed 's/^\([A-Z]\)/export \1/')"
        "$VPROV_BIN" acls --apply >"$RUN_DIR/acls.txt" 2>&1
    ) || {
        tail -n 5 "$RUN_DIR/acls.txt" >&2
        die "applying the ACLs failed"
    }
}

# The settings of one user: admin (no role given) or a role of `vprov acls --principals`.
print_secure_env() {
    local role=${1:-admin} user redis_user=vprov password name
    [[ -s $SECURE_DIR/kafka-users ]] ||
        die "no credentials in $SECURE_DIR yet: run SECURITY=sasl_ssl scripts/stack.sh up"
    if [[ $role == admin ]]; then
        user=admin redis_user=admin
    else
        user=vprov-$role
    fi
    password=$(secret kafka-users "$user") ||
        die "no Kafka user $user; roles: $(awk '$1 != "admin" {sub(/^vprov-/, "", $1); printf "%s ", $1}' "$SECURE_DIR/kafka-users")"
    echo "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT"
    echo "KAFKA_SECURITY_PROTOCOL=SASL_SSL"
    echo "KAFKA_SASL_MECHANISM=SCRAM-SHA-512"
    echo "KAFKA_SASL_USERNAME=$user"
    echo "KAFKA_SASL_PASSWORD=$password"
    echo "KAFKA_SSL_CA_LOCATION='$SECURE_DIR/ca.pem'"
    echo "REDIS_URL='rediss://$redis_user:$(secret redis-users "$redis_user")@127.0.0.1:$REDIS_PORT/0?ssl_ca_certs=$SECURE_DIR/ca.pem'"
    if [[ $role == admin ]]; then
        echo "# Each role's own settings: scripts/stack.sh env ROLE. Its Kafka user and password:"
        while read -r name password; do
            [[ $name == admin ]] || echo "#   ${name#vprov-}: KAFKA_SASL_USERNAME=$name KAFKA_SASL_PASSWORD=$password"
        done <"$SECURE_DIR/kafka-users"
    fi
}
