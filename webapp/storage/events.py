"""The event log: decision and sensor-fault events, one capped stream per kind in each key
bucket and a copy in each sensor's own stream (`webapp.storage.scripts.RECORD_EVENTS`); reads
merge the buckets' streams, newest first."""
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
        bounded event log, in one round trip (one script per key bucket); returns their ids."""
        by_bucket: dict[int, list[int]] = {}
        for i, event in enumerate(events):
            by_bucket.setdefault(self.keys.bucket(event["sensor"]), []).append(i)
        replies = self._run_scripts([self._events_call([events[i] for i in kept]) for kept in by_bucket.values()])
        ids: dict[int, str] = {}
        for kept, reply in zip(by_bucket.values(), replies):
            ids.update(zip(kept, reply))
        return [ids[i] for i in range(len(events))]

    def _events_call(self, events: Sequence[dict]) -> ScriptCall:
        """The script call that appends `events` (one or more, all of one key bucket), for
        `record_events` or a pipeline."""
        keys = []
        for event in events:
            kind, sensor = event["kind"], event["sensor"]
            keys += [self.keys.event_log(kind, self.keys.bucket(sensor)), self.keys.sensor_events(sensor, kind)]
        # EVENTS_MAX is shared by the buckets' streams (rounded up), as MAX_SENSORS is.
        args = [self.keys.share(self.settings.retention.events_max), self.EVENTS_READ_MAX, self._retention_ms,
                *(json.dumps(event, sort_keys=True) for event in events)]
        return self._record_events, keys, args

    def record_event(self, event: dict) -> str:
        """Append one decision or sensor-fault event to the bounded event log; returns its id."""
        return self.record_events([event])[0]

    @_unavailable
    def read_events(self, count: int, sensor: str | None = None, kind: str | None = None) -> list[dict]:
        """The newest events first, at most `count` (up to `EVENTS_READ_MAX`), optionally of
        one sensor or kind: reads only the streams asked for (a sensor's own, or each bucket's
        stream of the kind), never a scan. Ids of different buckets' streams come from the clocks
        of their servers: the merge is in time order as far as those clocks agree."""
        count = min(count, self.EVENTS_READ_MAX)
        found: list[dict] = []
        for each in (kind,) if kind else self.EVENT_KINDS:
            streams = [self.keys.sensor_events(sensor, each)] if sensor is not None else \
                [self.keys.event_log(each, bucket) for bucket in self.keys.all_buckets]
            for key in streams:
                found += self._newest_events(key, each, count)
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
