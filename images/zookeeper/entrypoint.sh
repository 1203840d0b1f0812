#!/bin/sh
# Writes /conf/zoo.cfg and /data/myid from the official image's ZOO_* variables, then runs
# the server in the foreground as the `zookeeper` user.
set -eu
: "${ZOO_MY_ID:?ZOO_MY_ID is required}"
: "${ZOO_SERVERS:?ZOO_SERVERS is required (server.N=host:peer:election;client ...)}"
{
    echo "dataDir=/data"
    echo "dataLogDir=/datalog"
    echo "tickTime=${ZOO_TICK_TIME:-2000}"
    echo "initLimit=${ZOO_INIT_LIMIT:-5}"
    echo "syncLimit=${ZOO_SYNC_LIMIT:-2}"
    echo "autopurge.snapRetainCount=3"
    echo "autopurge.purgeInterval=1"
    echo "maxClientCnxns=60"
    echo "standaloneEnabled=${ZOO_STANDALONE_ENABLED:-true}"
    echo "admin.enableServer=${ZOO_ADMINSERVER_ENABLED:-false}"
    echo "4lw.commands.whitelist=${ZOO_4LW_COMMANDS_WHITELIST:-srvr}"
    for server in $ZOO_SERVERS; do
        echo "$server"
    done
} > /conf/zoo.cfg
# Root without CAP_DAC_OVERRIDE (the stack drops it) writes only what it owns: /conf is root's,
# the volumes are zookeeper's once chowned, so myid is written as zookeeper.
chown -R zookeeper:zookeeper /data /datalog
setpriv --reuid zookeeper --regid zookeeper --init-groups sh -c 'echo "$1" > /data/myid' sh "$ZOO_MY_ID"
classpath=/usr/share/java/zookeeper.jar
[ -f /usr/share/java/slf4j-simple.jar ] && classpath=$classpath:/usr/share/java/slf4j-simple.jar
# shellcheck disable=SC2086  # JVMFLAGS is a list of flags
exec setpriv --reuid zookeeper --regid zookeeper --init-groups \
    java ${JVMFLAGS:-} -XX:+UseSerialGC -cp "$classpath" \
    org.apache.zookeeper.server.quorum.QuorumPeerMain /conf/zoo.cfg
