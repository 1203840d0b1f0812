"""What every part of the store shares: its connection, settings and keys, series labels and
retention, and the translation of Redis failures into `StoreUnavailable`."""
from __future__ import annotations

import functools
from typing import TypeAlias

import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.exceptions import RedisClusterException

from webapp.config import Settings
from webapp.errors import StoreUnavailable
from webapp.storage.keys import Keys

DAY_MS = 86_400_000

ScriptCall: TypeAlias = tuple[Script, list, list]  # a registered script, its KEYS and its ARGV


def raise_first_error(replies: list) -> list:
    """Raise the first error among a pipeline's replies; return them when there is none.

    redis-py's cluster pipeline can hand back an error (a failover's ``CLUSTERDOWN``) as a reply
    instead of raising it: every pipeline of the store and of alerting passes its replies here,
    or an error would be read as data.
    """
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


def executed(pipe) -> list:
    """Run a pipeline and return its replies, raising the first error among them (`raise_first_error`)."""
    return raise_first_error(pipe.execute(raise_on_error=False))


def _unless_error(callback, response, **options):
    return response if isinstance(response, Exception) else callback(response, **options)


class ClusterClient(RedisCluster):
    """`redis.cluster.RedisCluster` whose response callbacks let an error reply through.

    redis-py's cluster pipeline runs a command's response callback on its reply even when the
    reply is an error (a failover's ``ConnectionError``; ``_send_cluster_commands`` in
    redis/cluster.py, redis-py 8.1): ``TS.REVRANGE``'s parser then fails with a ``TypeError``,
    which no one translates into `StoreUnavailable`, so the request was answered 500 instead of
    503. Wrapped, the error stays a reply and `raise_first_error` raises it. The TimeSeries
    commands register their callbacks again on every ``client.ts()``, so the wrapping is done
    in `set_response_callback` too.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for command, callback in list(self.cluster_response_callbacks.items()):
            self.cluster_response_callbacks[command] = functools.partial(_unless_error, callback)

    def set_response_callback(self, command, callback) -> None:
        super().set_response_callback(command, functools.partial(_unless_error, callback))


def _unavailable(method):
    """Translate Redis failures into `StoreUnavailable` (answered 503, retried by clients)."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except (redis.RedisError, RedisClusterException) as exc:  # the latter: no cluster node answers
            raise StoreUnavailable(f"storage unavailable: {exc.__class__.__name__}") from exc

    return wrapper


class StoreBase:
    """The attributes `webapp.storage.Store` sets up, and the helpers its parts share."""

    client: redis.Redis
    settings: Settings
    keys: Keys
    _record_decision: Script
    _record_events: Script
    _read_written: Script

    def _labels(self, sensor: str, **extra: str) -> dict[str, str]:
        return {"app": "aeroguard", "ns": self.keys.namespace, "sensor": sensor, **extra}

    @property
    def _retention_ms(self) -> int:
        return int(self.settings.retention.retention_days * DAY_MS)

    def _registries(self, kind: str, name: str) -> list[str]:
        """This kind's registry and the other kind's in the bucket of `name` (a name belongs to
        one kind of writer)."""
        other = "sensors" if kind == "groups" else "groups"
        bucket = self.keys.bucket(name)
        return [self.keys.registry(kind, bucket), self.keys.registry(other, bucket)]

    @property
    def _cluster(self) -> bool:
        return isinstance(self.client, RedisCluster)

    def _at(self, key: str, *command, pipe=None):
        """Run (or queue in `pipe`) a command that names no key (``TIME``, ``TS.QUERYINDEX``,
        ``TS.MGET``) on the server holding `key`'s slot: with Redis Cluster, the master of that
        slot, which holds every key of the same bucket; otherwise the one server."""
        target = pipe if pipe is not None else self.client
        if self._cluster:
            return target.execute_command(*command, target_nodes=self.client.get_node_from_key(key))
        return target.execute_command(*command)

    def _wait_on(self, pipe, key: str) -> None:
        """Queue ``WAIT`` in `pipe` on the connection that writes `key`, so it counts the
        replicas that have that write: redis-py's cluster client would send a keyless ``WAIT``
        to every node and add up their answers."""
        wait = ("WAIT", self.settings.storage.redis_wait_replicas, self.settings.storage.redis_wait_timeout_ms)
        if self._cluster:
            pipe.execute_command(*wait, target_nodes=self.client.get_node_from_key(key))
        else:
            pipe.execute_command(*wait)

    def _owner(self, key: str) -> str | None:
        """The cluster node that serves `key`'s slot now (None on one Redis)."""
        return self.client.get_node_from_key(key).name if self._cluster else None

    def _run_scripts(self, calls: list[ScriptCall]) -> list:
        """Run registered scripts in order in one round trip (a pipeline of ``EVALSHA``), and
        return their replies. A script the server does not know (restarted, failed over) did
        not run: it is loaded and run again on its own; any other error is raised."""
        pipe = self.client.pipeline(transaction=False)
        for script, keys, args in calls:
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        replies = pipe.execute(raise_on_error=False)
        for i, ((script, keys, args), reply) in enumerate(zip(calls, replies)):
            if isinstance(reply, redis.exceptions.NoScriptError):
                replies[i] = script(keys=keys, args=args)
        return raise_first_error(replies)
