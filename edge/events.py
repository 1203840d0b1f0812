"""A JSON-lines log of what a node did (triggers, readings, deliveries), for fault checks.

Drills and fault tests give each node ``--event-log PATH``; the drill (`harness/drill/`) and
the invariant checker (`harness/faults/invariants.py`) read the files back. Without a path, nothing is written.
"""
from __future__ import annotations

import json
import threading
import time


class EventLog:
    """Append-only JSON lines, one per event, flushed at once (a kill -9 keeps what was written).

    >>> EventLog(None).write("trigger", round=1)  # disabled: a no-op
    """

    def __init__(self, path: str | None, node_id: str = "") -> None:
        self.path = path
        self.node_id = node_id
        self._lock = threading.Lock()
        self._file = open(path, "a", encoding="utf-8") if path else None

    def write(self, kind: str, **fields: object) -> None:
        if self._file is None:
            return
        line = json.dumps({"t": time.time(), "node": self.node_id, "kind": kind, **fields})
        with self._lock:
            if not self._file.closed:
                self._file.write(line + "\n")
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()


class Counters:
    """Named counters shared by a node's threads; read with `snapshot` or by name.

    >>> c = Counters()
    >>> c.add("rounds"); c.add("rounds", 2); c["rounds"], c["missing"]
    (3, 0)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = {}

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._values[name] = self._values.get(name, 0) + amount

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self._values.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


def read_events(path: str) -> list[dict]:
    """All events of one file; a last line cut short by a kill is skipped."""
    events = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events
