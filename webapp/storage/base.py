"""What every part of the store shares: its connection, settings and keys, series labels and
retention, and the translation of Redis failures into `StoreUnavailable`."""
from __future__ import annotations

import functools
from typing import TypeAlias

import redis
from redis.commands.core import Script

from webapp.config import Settings
from webapp.errors import StoreUnavailable
from webapp.storage.keys import Keys

DAY_MS = 86_400_000

ScriptCall: TypeAlias = tuple[Script, list, list]  # a registered script, its KEYS and its ARGV


def _unavailable(method):
    """Translate Redis failures into `StoreUnavailable` (answered 503, retried by clients)."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except redis.RedisError as exc:
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

    def _registries(self, kind: str) -> list[str]:
        """This kind's registry and the other kind's (a name belongs to one kind of writer)."""
        other = "sensors" if kind == "groups" else "groups"
        return [self.keys.registry(kind), self.keys.registry(other)]

    def _run_scripts(self, calls: list[ScriptCall]) -> list:
        """Run registered scripts in order in one round trip (a pipeline of ``EVALSHA``), and
        return their replies. A script the server does not know (restarted, failed over) did
        not run: it is loaded and run again on its own; any other error is raised."""
        pipe = self.client.pipeline(transaction=False)
        for script, keys, args in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        replies = pipe.execute(raise_on_error=False)
        for i, ((script, keys, args), reply) in enumerate(zip(calls, replies)):
            if isinstance(reply, redis.exceptions.NoScriptError):
                replies[i] = script(keys=keys, args=args)
            elif isinstance(reply, Exception):
                raise reply
        return replies
