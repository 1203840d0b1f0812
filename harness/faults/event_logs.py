"""What the web tier stored, as the edge nodes' event logs tell it: `Stored`, `EventTail`, `DeliveryLog`."""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Stored:
    """One aggregate the web tier stored: when its request arrived and when it was answered."""

    key: str
    doc: dict
    arrived: float
    answered: float | None = None


class EventTail:
    """The events a node wrote to its event log after `since` (epoch seconds), read incrementally.

    Reading starts at the end of the file as it is now (the last complete line), so a long-running
    stack's history is never parsed; a line still being written is read once it is complete.
    """

    def __init__(self, path: Path, since: float) -> None:
        self.path = Path(path)
        self.since = since
        self._events: list[dict] = []
        self._offset = 0
        if self.path.exists():
            with open(self.path, "rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - 65536))
                tail = handle.read()
            self._offset = size - len(tail) + tail.rfind(b"\n") + 1

    def events(self, kind: str | None = None) -> list[dict]:
        self._read()
        return [e for e in self._events if kind is None or e["kind"] == kind]

    def _read(self) -> None:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        self._offset += end
        for line in data[:end].splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line cut short by a kill -9
            if event.get("t", 0) >= self.since:
                self._events.append(event)


class DeliveryLog:
    """What the web tier stored, rebuilt from the edges' event logs (for a stack we did not start).

    An aggregate counts as stored when a node's POST of it was answered 201 (or 200 when the
    201's answer was lost and the retry found it stored): `Stored.arrived` is when that POST was
    sent, `answered` when its answer came back. Same interface as the drill's in-process `Recorder`.
    """

    def __init__(self, sources: list) -> None:
        self.sources = sources  # objects with events(): growing lists, read incrementally here
        self._seen = [0] * len(sources)
        self._docs: dict[tuple, dict] = {}
        self._answers: dict[tuple, dict] = {}
        self._lock = threading.Lock()

    @property
    def stored(self) -> list[Stored]:
        with self._lock:
            for i, source in enumerate(self.sources):
                events = source.events()
                for e in events[self._seen[i]:]:
                    if e["kind"] == "aggregate":
                        doc = e["doc"]
                        self._docs[(doc["group"], doc["epoch"], doc["round"])] = doc
                    elif e["kind"] == "delivery" and e.get("code") in (200, 201):
                        key = (e["group"], e["epoch"], e["round"])
                        known = self._answers.get(key)
                        if known is None or (known["code"] != 201 and e["code"] == 201):
                            self._answers[key] = e  # the 201 when there was one
                self._seen[i] = len(events)
            stored = [Stored(":".join(map(str, key)), self._docs[key], e["sent_at"], e["t"])
                      for key, e in self._answers.items() if key in self._docs]
        return sorted(stored, key=lambda s: s.arrived)

    def after(self, t: float) -> list[Stored]:
        """Aggregates answered after `t`, in the order they were sent."""
        return [s for s in self.stored if s.answered > t]


def all_events(processes) -> list[dict]:
    return [e for p in processes for e in p.events()]
