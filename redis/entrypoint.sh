#!/bin/sh
# Starts Redis or Sentinel of the AeroGuard swarm stack with the passwords from Docker secrets,
# so no password is ever in the stack file, a config in git, or a command line (`ps`):
#   - the Redis password (default user, `masterauth`, `sentinel auth-pass`, and Sentinel's own
#     `requirepass`: Sentinels use it with each other and the web tier with them);
#   - Grafana's password, for the read-only `grafana` user that redis.conf and sentinel.conf
#     declare `off`: it is turned on here with that password, never with the Redis one.
#
#   entrypoint.sh server [REDIS-SERVER OPTIONS...]   e.g. --replicaof redis-1 6379
#   entrypoint.sh sentinel ANNOUNCE_HOSTNAME
#   entrypoint.sh cluster ANNOUNCE_HOSTNAME [REDIS-SERVER OPTIONS...]
#                                                      a Redis Cluster node (deploy/swarm-cluster.yml)
#   entrypoint.sh cluster-create HOST:PORT...          forms the cluster once (1 replica per master)
#   entrypoint.sh health server|sentinel               healthcheck: PING answers PONG
#
# Paths default to the redis/redis-stack-server image and the stack's mounts; tests/test_deploy.py
# overrides them to run this script against the local Redis Stack.
set -eu

BIN=${AEROGUARD_REDIS_BIN:-/opt/redis-stack/bin}
CONF_DIR=${AEROGUARD_REDIS_CONF_DIR:-/etc/aeroguard}
DATA_DIR=${AEROGUARD_REDIS_DATA_DIR:-/data}
SECRET=${REDIS_PASSWORD_FILE:-/run/secrets/redis_password}
GRAFANA_SECRET=${REDIS_GRAFANA_PASSWORD_FILE:-/run/secrets/redis_grafana_password}

die() {
    echo "entrypoint.sh: $*" >&2
    exit 1
}

# Prints the password held in the secret file $1.
read_secret() {
    [ -r "$1" ] || die "password secret not readable at $1 (create it: see docker-stack.yml)"
    secret=$(cat "$1")
    # It is written unquoted into config files: allow only characters that need no quoting.
    case $secret in
        "" | *[!A-Za-z0-9_-]*) die "the password in $1 must be non-empty [A-Za-z0-9_-] (openssl rand -hex 32)" ;;
    esac
    printf '%s' "$secret"
}

read_passwords() {
    pw=$(read_secret "$SECRET")
    grafana_pw=$(read_secret "$GRAFANA_SECRET")
    [ "$grafana_pw" != "$pw" ] || die "the Grafana password ($GRAFANA_SECRET) must differ from the Redis password"
}

# Prints the `user grafana off ...` line of config file $1, turned on with Grafana's password.
grafana_user() {
    line=$(grep '^user grafana off ' "$1") || die "$1 has no 'user grafana off ...' line"
    printf '%s\n' "$line" | sed "s/^user grafana off /user grafana on >$grafana_pw /"
}

role=${1:-}
[ $# -gt 0 ] && shift
umask 077
# Writes redis.conf with the passwords to a new file in the container's own filesystem (a
# tmpfs), never in the data volume, and prints its path.
server_conf() {
    read_passwords
    conf=$(mktemp "${TMPDIR:-/tmp}/redis.XXXXXX")
    {
        grep -v '^user grafana ' "$CONF_DIR/redis.conf"
        grafana_user "$CONF_DIR/redis.conf"
        printf 'requirepass %s\nmasterauth %s\n' "$pw" "$pw"
    } > "$conf"
    printf '%s' "$conf"
}

# Prints "PONG" when HOST PORT answers PING (REDISCLI_AUTH set).
pong() {
    "$BIN/redis-cli" -h "$1" -p "$2" ping 2>/dev/null || true
}

# Prints one field of CLUSTER INFO at HOST PORT.
cluster_field() {
    "$BIN/redis-cli" -h "$1" -p "$2" cluster info 2>/dev/null | tr -d '\r' | sed -n "s/^$3://p"
}

# wait_for WANT TRIES DELAY CMD...: runs CMD every DELAY s until it prints WANT; fails after TRIES.
wait_for() {
    want=$1 tries=$2 delay=$3
    shift 3
    until [ "$("$@")" = "$want" ]; do
        tries=$((tries - 1))
        [ "$tries" -gt 0 ] || return 1
        sleep "$delay"
    done
}

case $role in
server)
    conf=$(server_conf)
    exec "$BIN/redis-server" "$conf" "$@"
    ;;
cluster)
    # Clients reach every node by its announced name (the swarm service), never a task IP:
    # CLUSTER SHARDS/SLOTS and MOVED redirections give the hostname. The cluster bus between
    # nodes still uses IPs; nodes.conf (in /data) keeps what the node learnt of its peers.
    [ $# -ge 1 ] || die "usage: entrypoint.sh cluster ANNOUNCE_HOSTNAME [REDIS-SERVER OPTIONS...]"
    host=$1
    shift
    conf=$(server_conf)
    printf 'cluster-enabled yes\ncluster-config-file nodes.conf\ncluster-announce-hostname %s\ncluster-preferred-endpoint-type hostname\n' \
        "$host" >> "$conf"
    exec "$BIN/redis-server" "$conf" "$@"
    ;;
cluster-create)
    # One-shot: waits for every node, forms the cluster unless one node already has all the
    # slots (a restarted task does nothing), and waits until every node reports it ok.
    # CLUSTER MEET takes IPs only: the names are resolved here, the nodes announce their names.
    [ $# -ge 6 ] || die "usage: entrypoint.sh cluster-create HOST:PORT... (6 nodes: 3 masters, 3 replicas)"
    REDISCLI_AUTH=$(read_secret "$SECRET")
    export REDISCLI_AUTH
    addrs=""
    for node in "$@"; do
        h=${node%:*} p=${node##*:}
        wait_for PONG 90 2 pong "$h" "$p" || die "$node does not answer PING"
        if [ "$(cluster_field "$h" "$p" cluster_slots_assigned)" = 16384 ]; then
            echo "entrypoint.sh: the cluster is formed already ($node has every slot)"
            exit 0
        fi
        ip=$(getent hosts "$h" | sed -n '1s/ .*//p')
        [ -n "$ip" ] || die "$h does not resolve"
        addrs="$addrs $ip:$p"
    done
    # shellcheck disable=SC2086  # one word per node
    "$BIN/redis-cli" --cluster create $addrs --cluster-replicas 1 --cluster-yes
    for node in "$@"; do
        h=${node%:*} p=${node##*:}
        wait_for ok 60 1 cluster_field "$h" "$p" cluster_state || die "$node: cluster_state is not ok after the create"
    done
    echo "entrypoint.sh: cluster formed:$addrs"
    ;;
sentinel)
    [ $# -eq 1 ] || die "usage: entrypoint.sh sentinel ANNOUNCE_HOSTNAME"
    read_passwords
    conf=$DATA_DIR/sentinel.conf
    # First start: the template. Later starts keep what Sentinel learned (current master,
    # peers, epoch); a Sentinel that lost its volume catches up from its peers' hello messages.
    [ -f "$conf" ] || cp "$CONF_DIR/sentinel.conf" "$conf"
    # The copy of a config mounted 0444 is read-only, and root without CAP_DAC_OVERRIDE (the
    # stack drops every capability) cannot append to it: make it the owner's to write.
    chmod 600 "$conf"
    # Re-applied on every start, after `sentinel monitor`, so a rotated secret takes effect.
    # Sentinel rewrites its users as `user NAME on #HASH ...` (default included, from
    # requirepass): all are dropped here, or an old hash would outlive a rotated secret.
    sed -i -e '/^sentinel auth-pass /d' -e '/^sentinel announce-ip /d' \
        -e '/^requirepass /d' -e '/^user /d' "$conf"
    {
        grafana_user "$CONF_DIR/sentinel.conf"
        printf 'requirepass %s\nsentinel auth-pass aeroguard %s\nsentinel announce-ip %s\n' "$pw" "$pw" "$1"
    } >> "$conf"
    exec "$BIN/redis-server" "$conf" --sentinel
    ;;
health)
    case ${1:-} in
        server) port=${AEROGUARD_REDIS_PORT:-6379} ;;
        sentinel) port=${AEROGUARD_SENTINEL_PORT:-26379} ;;
        *) die "usage: entrypoint.sh health server|sentinel" ;;
    esac
    REDISCLI_AUTH=$(read_secret "$SECRET")
    export REDISCLI_AUTH
    [ "$("$BIN/redis-cli" -h 127.0.0.1 -p "$port" ping)" = PONG ]
    ;;
*)
    die "usage: entrypoint.sh server|sentinel|cluster|cluster-create|health ..."
    ;;
esac
