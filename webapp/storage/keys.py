"""Every Redis key of one namespace, built in one place (`Keys`)."""
from __future__ import annotations


class Keys:
    """Builds every Redis key of one namespace (`prefix`)."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def series(self, sensor: str, *parts: str) -> str:
        return ":".join((f"{self.prefix}s", sensor, *parts))

    def sensor_of(self, key: str) -> str:
        """The sensor of a key built by `series`: ``<prefix>s:<sensor>:…`` (ids have no colon)."""
        return key[len(self.prefix) + 2:].split(":", 1)[0]

    def group(self, group: str, *parts: str) -> str:
        return ":".join((f"{self.prefix}g", group, *parts))

    def event_log(self, kind: str, sensor: str | None = None) -> str:
        """The capped stream of one kind of event (``decision`` or ``sensor_fault``): of every
        sensor, or of one `sensor` only. Decisions keep the original ``<prefix>events`` key."""
        if sensor is not None:
            return self.series(sensor, "events", kind)
        return f"{self.prefix}events" if kind == "decision" else f"{self.prefix}events:{kind}"

    def incident(self, subject: str) -> str:
        """The live state of one subject's incidents (a sensor, or ``<group>/<node>``)."""
        return f"{self.prefix}incident:{subject}"

    @property
    def incidents_open(self) -> str:
        return f"{self.prefix}incidents:open"

    def incident_log(self, sensor: str | None = None) -> str:
        """The capped log of closed incidents: of every sensor, or of one `sensor` (and its nodes)."""
        return self.series(sensor, "incidents") if sensor is not None else f"{self.prefix}incidents"

    @property
    def alerts(self) -> str:
        """The stream of alerts waiting for delivery (webapp/alerting.py)."""
        return f"{self.prefix}alerts"

    def alert_delivered(self, entry_id: str) -> str:
        """The URLs one alert (its `alerts` stream entry) has been delivered to."""
        return f"{self.alerts}:delivered:{entry_id}"

    def registry(self, kind: str) -> str:
        """The names of one kind of series (``groups`` or ``sensors``), scored by last write."""
        return f"{self.prefix}registry:{kind}"

    @property
    def namespace(self) -> str:
        """The label value that tells this namespace's series apart in ``TS.MRANGE`` filters."""
        return self.prefix.strip(":").replace(":", "-") or "default"
