#!/bin/sh
# Starts Redis or Sentinel of the AeroGuard swarm stack with the password from a Docker secret,
# so the password is never in the stack file, a config in git, or a command line (`ps`).
#
#   entrypoint.sh server [REDIS-SERVER OPTIONS...]   e.g. --replicaof redis-1 6379
#   entrypoint.sh sentinel ANNOUNCE_HOSTNAME
#   entrypoint.sh health server|sentinel               healthcheck: PING answers PONG
#
# Paths default to the redis/redis-stack-server image and the stack's mounts; tests/test_deploy.py
# overrides them to run this script against the local Redis Stack.
set -eu

BIN=${AEROGUARD_REDIS_BIN:-/opt/redis-stack/bin}
CONF_DIR=${AEROGUARD_REDIS_CONF_DIR:-/etc/aeroguard}
DATA_DIR=${AEROGUARD_REDIS_DATA_DIR:-/data}
SECRET=${REDIS_PASSWORD_FILE:-/run/secrets/redis_password}

die() {
    echo "entrypoint.sh: $*" >&2
    exit 1
}

read_password() {
    [ -r "$SECRET" ] || die "Redis password secret not readable at $SECRET (create it: see docker-stack.yml)"
    pw=$(cat "$SECRET")
    # It is written unquoted into config files: allow only characters that need no quoting.
    case $pw in
        "" | *[!A-Za-z0-9_-]*) die "the password in $SECRET must be non-empty [A-Za-z0-9_-] (openssl rand -hex 32)" ;;
    esac
}

role=${1:-}
[ $# -gt 0 ] && shift
umask 077
case $role in
server)
    read_password
    # The full config lives only in the container's own filesystem, never in the data volume.
    conf=$(mktemp "${TMPDIR:-/tmp}/redis.XXXXXX")
    { cat "$CONF_DIR/redis.conf"; printf 'requirepass %s\nmasterauth %s\n' "$pw" "$pw"; } > "$conf"
    exec "$BIN/redis-server" "$conf" "$@"
    ;;
sentinel)
    [ $# -eq 1 ] || die "usage: entrypoint.sh sentinel ANNOUNCE_HOSTNAME"
    read_password
    conf=$DATA_DIR/sentinel.conf
    # First start: the template. Later starts keep what Sentinel learned (current master,
    # peers, epoch); a Sentinel that lost its volume catches up from its peers' hello messages.
    [ -f "$conf" ] || cp "$CONF_DIR/sentinel.conf" "$conf"
    # Re-applied on every start, after `sentinel monitor`, so a rotated secret takes effect.
    sed -i -e '/^sentinel auth-pass /d' -e '/^sentinel announce-ip /d' "$conf"
    printf 'sentinel auth-pass aeroguard %s\nsentinel announce-ip %s\n' "$pw" "$1" >> "$conf"
    exec "$BIN/redis-server" "$conf" --sentinel
    ;;
health)
    case ${1:-} in
        server) read_password; export REDISCLI_AUTH="$pw"; port=${AEROGUARD_REDIS_PORT:-6379} ;;
        sentinel) port=${AEROGUARD_SENTINEL_PORT:-26379} ;;
        *) die "usage: entrypoint.sh health server|sentinel" ;;
    esac
    [ "$("$BIN/redis-cli" -h 127.0.0.1 -p "$port" ping)" = PONG ]
    ;;
*)
    die "usage: entrypoint.sh server|sentinel|health ..."
    ;;
esac
