"""The event log: decision and sensor-fault events, one capped stream per kind and a copy in
each sensor's own stream (`webapp.storage.scripts.RECORD_EVENTS`)."""
from __future__ import annotations

import json
from collections.abc import Sequence

from webapp.storage.base import ScriptCall
from webapp.storage.base import StoreBase
from webapp.storage.base import _unavailable


class EventLog(StoreBase):
    """The event log of `webapp.storage.Store` (its script registered by the store)."""

    EVENTS_READ_MAX = 1000  # the most events one read returns, and what a sensor's stream keeps
    EVENT_KINDS = ("decision", "sensor_fault")

    @_unavailable
    def record_events(self, events: list[dict]) -> list[str]:
        """Append decision or sensor-fault events (each with its ``kind`` and ``sensor``) to the
        bounded event log, in one round trip; returns their ids."""
        if not events:
            return []
        script, keys, args = self._events_call(events)
        return script(keys=keys, args=args)

    def _events_call(self, events: Sequence[dict]) -> ScriptCall:
        """The script call that appends `events` (one or more), for `record_events` or a pipeline."""
        keys = [key for event in events for key in (self.keys.event_log(event["kind"]),
                                                     self.keys.event_log(event["kind"], event["sensor"]))]
        args = [self.settings.retention.events_max, self.EVENTS_READ_MAX, self._retention_ms,
                *(json.dumps(event, sort_keys=True) for event in events)]
        return self._record_events, keys, args

    def record_event(self, event: dict) -> str:
        """Append one decision or sensor-fault event to the bounded event log; returns its id."""
        return self.record_events([event])[0]

    @_unavailable
    def read_events(self, count: int, sensor: str | None = None, kind: str | None = None) -> list[dict]:
        """The newest events first, at most `count` (up to `EVENTS_READ_MAX`), optionally of
        one sensor or kind: reads only the streams asked for (a sensor's own), never a scan."""
        count = min(count, self.EVENTS_READ_MAX)
        found: list[dict] = []
        for each in (kind,) if kind else self.EVENT_KINDS:
            found += self._newest_events(self.keys.event_log(each, sensor), each, count)
        found.sort(key=lambda event: tuple(int(part) for part in event["id"].split("-")), reverse=True)
        return found[:count]

    def _newest_events(self, key: str, kind: str, count: int) -> list[dict]:
        """The newest `count` events of `kind` in the stream `key`. The decision stream also holds
        the sensor faults written before they had their own stream: skipped, a page at a time."""
        found: list[dict] = []
        last = "+"
        while len(found) < count:
            batch = self.client.xrevrange(key, max=last, min="-", count=count)
            for entry_id, fields in batch:
                event = json.loads(fields["event"])
                if event.get("kind") == kind:
                    found.append({"id": entry_id, **event})
            if len(batch) < count:
                break
            last = "(" + batch[-1][0]
        return found[:count]
