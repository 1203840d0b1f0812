"""What every part of the store shares: its connection, settings and keys, series labels and
retention, and the translation of Redis failures into `StoreUnavailable`."""
from __future__ import annotations

import functools

import redis

from webapp.config import Settings
from webapp.errors import StoreUnavailable
from webapp.storage.keys import Keys

DAY_MS = 86_400_000


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

    def _labels(self, sensor: str, **extra: str) -> dict[str, str]:
        return {"app": "aeroguard", "ns": self.keys.namespace, "sensor": sensor, **extra}

    @property
    def _retention_ms(self) -> int:
        return int(self.settings.retention_days * DAY_MS)

    def _registries(self, kind: str) -> list[str]:
        """This kind's registry and the other kind's (a name belongs to one kind of writer)."""
        other = "sensors" if kind == "groups" else "groups"
        return [self.keys.registry(kind), self.keys.registry(other)]
