"""Every Redis key of one namespace, built in one place (`Keys`).

One layout serves one Redis, Sentinel and Redis Cluster: every key of a sensor or edge group
carries the hash tag ``{N}`` of its bucket, N = crc32(name) mod ``AEROGUARD_KEY_BUCKETS``
(``<prefix>{N}:s:<sensor>:…``, ``<prefix>{N}:g:<group>:…``), and every index that used to be
global (registries, event logs, open incidents, the incident log, the alert stream and its
delivered sets) is one key per bucket under the same tag. So each Lua script touches one hash
slot (atomic on a cluster too), and a listing reads every bucket with single-key commands and
merges (docs/decisions.md, "One key layout, hash-tagged by bucket").
"""
from __future__ import annotations

import zlib


class Keys:
    """Builds every Redis key of one namespace (`prefix`), spread over `buckets` hash tags.

    >>> keys = Keys("ag:", buckets=16)
    >>> keys.series("boiler", "readings")
    'ag:{1}:s:boiler:readings'
    >>> keys.sensor_of(keys.series("boiler", "readings")), keys.registry("sensors", 1)
    ('boiler', 'ag:{1}:registry:sensors')
    >>> keys.incident("boiler/n2") == "ag:{1}:incident:boiler/n2"
    True
    """

    def __init__(self, prefix: str, buckets: int = 16):
        if buckets < 1:
            raise ValueError(f"buckets must be at least 1, not {buckets}")
        self.prefix = prefix
        self.buckets = buckets

    def bucket(self, name: str) -> int:
        """The bucket of a sensor or group (of ``<group>/<node>``: its group's)."""
        return zlib.crc32(name.split("/", 1)[0].encode()) % self.buckets

    @property
    def all_buckets(self) -> range:
        return range(self.buckets)

    def _tagged(self, bucket: int, *parts: str) -> str:
        return ":".join((f"{self.prefix}{{{bucket}}}", *parts))

    def series(self, sensor: str, *parts: str) -> str:
        return self._tagged(self.bucket(sensor), "s", sensor, *parts)

    def sensor_of(self, key: str) -> str:
        """The sensor of a key built by `series`: ``<prefix>{N}:s:<sensor>:…`` (ids have no colon)."""
        return key.split("}:s:", 1)[1].split(":", 1)[0]

    def group(self, group: str, *parts: str) -> str:
        return self._tagged(self.bucket(group), "g", group, *parts)

    def event_log(self, kind: str, bucket: int) -> str:
        """One bucket's capped stream of one kind of event (``decision`` or ``sensor_fault``)."""
        return self._tagged(bucket, "events") if kind == "decision" else self._tagged(bucket, "events", kind)

    def sensor_events(self, sensor: str, kind: str) -> str:
        """The capped stream of one kind of event of one `sensor` only."""
        return self.series(sensor, "events", kind)

    def incident(self, subject: str) -> str:
        """The live state of one subject's incidents (a sensor, or ``<group>/<node>``)."""
        return self._tagged(self.bucket(subject), "incident", subject)

    def incidents_open(self, bucket: int) -> str:
        """The subjects of one bucket with an open incident."""
        return self._tagged(bucket, "incidents", "open")

    def incident_log(self, bucket: int) -> str:
        """One bucket's capped log of closed incidents."""
        return self._tagged(bucket, "incidents")

    def sensor_incidents(self, sensor: str) -> str:
        """The capped log of closed incidents of one `sensor` (and its nodes)."""
        return self.series(sensor, "incidents")

    def alerts(self, bucket: int) -> str:
        """One bucket's stream of alerts waiting for delivery (webapp/alerting.py)."""
        return self._tagged(bucket, "alerts")

    def alert_delivered(self, bucket: int, entry_id: str) -> str:
        """The URLs one alert (its bucket's `alerts` stream entry) has been delivered to."""
        return f"{self.alerts(bucket)}:delivered:{entry_id}"

    def registry(self, kind: str, bucket: int) -> str:
        """One bucket's names of one kind of series (``groups`` or ``sensors``), scored by last write."""
        return self._tagged(bucket, "registry", kind)

    def share(self, cap: int) -> int:
        """A bucket's share of a namespace-wide cap (rounded up; 0 stays 0: no cap).

        >>> Keys("ag:", 16).share(10_000), Keys("ag:", 16).share(1), Keys("ag:", 16).share(0)
        (625, 1, 0)
        """
        return -(-cap // self.buckets)

    @property
    def namespace(self) -> str:
        """The label value that tells this namespace's series apart in ``TS.MRANGE`` filters."""
        return self.prefix.strip(":").replace(":", "-") or "default"
