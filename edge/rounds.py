"""One round at the leader: read the queue's entries, classify them, build the aggregate.

The group's `LockingQueue` is at-least-once and its entries outlive rounds and leaders. Taking
an entry through the recipe (lock, read, re-check the lock, delete) costs about 15 ms on a
3-node ensemble, and the leader would pay it per node before it can fuse. So the leader first
*reads* the round's entries (one ``get_children`` with a watch, one ``get`` per new entry),
fuses and delivers, and only then takes and consumes every entry it read through the recipe
(`Collector.sweep`). Reading before consuming is safe: an entry left behind by a leader that
dies in between carries that leader's epoch, so the next leader counts it as late and never
uses it. Every entry is classified once: *accepted* (this epoch and round, first from that
node), *duplicate* (that node again), *late* (an older epoch or round, or this round after
it closed: counted, never used), *ahead* (a newer epoch: a newer leader exists) or *invalid*.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from kazoo.exceptions import NoNodeError

from edge import kazoo_compat
from edge.events import Counters
from edge.events import EventLog
from edge.fusion import fuse
from edge.hotconfig import EdgeConfig
from edge.schema import Reading
from edge.schema import SchemaError
from edge.schema import aggregate

log = logging.getLogger(__name__)

MAX_ENTRIES_PER_ROUND = 256


class RoundAborted(Exception):
    """Raised when the connection is suspended mid-round: the round is not delivered."""


class Collector:
    """Collects one round's readings from the group's queue for the leader.

    Parameters
    ----------
    queue
        The group's kazoo `LockingQueue` (one per leadership term).
    node_id
        The leader's own id (its reading is taken directly, not from the queue).
    live
        Returns the ids of the live nodes (the discovery ChildrenWatch's latest view).
    connected
        False once the ZooKeeper connection is suspended.
    counts, events
        Where every entry's fate is counted and logged.
    """

    def __init__(self, queue, node_id: str, live: Callable[[], frozenset[str]], connected: Callable[[], bool],
                 counts: Counters, events: EventLog) -> None:
        self.queue = queue
        self.zk = queue.client
        self.entries = kazoo_compat.entries_path(queue)
        self.node_id = node_id
        self.live = live
        self.connected = connected
        self.counts = counts
        self.events = events
        self._seen: set[str] = set()

    def collect(self, epoch: int, round_: int, readings: dict[str, Reading], deadline: float) -> None:
        """Read entries until every live node answered or `deadline`, classifying each once.

        Raises
        ------
        RoundAborted
            When the connection is suspended while collecting.
        """
        self.zk.ensure_path(self.entries)
        expected = set(self.live()) | {self.node_id}
        changed = threading.Event()
        while True:
            if not self.connected():
                raise RoundAborted("connection suspended while collecting")
            changed.clear()
            names = self.zk.get_children(self.entries, watch=lambda event: changed.set())
            self._seen &= set(names)
            for name in sorted(set(names) - self._seen)[:MAX_ENTRIES_PER_ROUND]:
                self._seen.add(name)
                try:
                    raw, _ = self.zk.get(f"{self.entries}/{name}")
                except NoNodeError:
                    continue  # consumed by another (older) leader meanwhile
                self.classify(raw, epoch, round_, readings)
            expected |= set(self.live())
            remaining = deadline - time.monotonic()
            if expected <= readings.keys() or remaining <= 0:
                break
            changed.wait(remaining)
        missing = sorted(expected - readings.keys())
        if missing:
            self.counts.add("missing_readings", len(missing))
            self.events.write("missing", epoch=epoch, round=round_, nodes=missing)

    def sweep(self, epoch: int, round_: int) -> None:
        """Take and consume what is queued now through the recipe; classify entries not yet read.

        Called after the round's aggregate was handed to delivery, so the queue stays small;
        a reading of this round found here arrived after the round closed and counts as late.
        """
        for _ in range(MAX_ENTRIES_PER_ROUND):
            if not self.connected():
                return
            taken = kazoo_compat.take(self.queue)
            if taken is None:
                break
            name, raw = taken
            kazoo_compat.consume(self.queue)  # if our entry lock is gone, the entry comes back
            if name not in self._seen:
                self.classify(raw, epoch, round_, None)
            self._seen.discard(name)

    def classify(self, raw: bytes, epoch: int, round_: int, readings: dict[str, Reading] | None) -> str:
        """Accept a reading of this open round once; count (never use) anything else.

        `readings` is None once the round closed. Returns the entry's kind.
        """
        try:
            reading = Reading.from_bytes(raw)
        except SchemaError as exc:
            self.counts.add("invalid_readings")
            log.error("invalid queue entry dropped: %s", exc)
            return "invalid"
        if (reading.epoch, reading.round) == (epoch, round_) and readings is not None:
            kind = "duplicate" if reading.node_id in readings else "accepted"
            readings.setdefault(reading.node_id, reading)
        elif (reading.epoch, reading.round) <= (epoch, round_):
            kind = "late"
        else:
            kind = "ahead"
        self.counts.add(f"readings_{kind}")
        if kind != "accepted":
            log.info("%s reading from %s for epoch %d round %d (now %d/%d)", kind, reading.node_id,
                     reading.epoch, reading.round, epoch, round_)
        self.events.write("collected", status=kind, source=reading.node_id, epoch=reading.epoch,
                          round=reading.round, value=reading.value, in_round=round_)
        return kind


def build_aggregate(group: str, epoch: int, round_: int, issued_at: int, readings: dict[str, Reading],
                    config: EdgeConfig) -> dict:
    """Fuse one round's readings into the aggregate the web tier stores.

    >>> r = {n: Reading(n, 3, 1, v, 100) for n, v in (("n1", 20.0), ("n2", 20.2), ("n3", 90.0))}
    >>> doc = build_aggregate("g", 1, 3, 123, r, EdgeConfig())
    >>> round(doc["value"], 2), [e["node_id"] for e in doc["excluded"]]
    (20.1, ['n3'])
    """
    fused = fuse({n: r.value for n, r in readings.items()}, config.fusion_k, config.fusion_min_spread)
    kept = [{"node_id": n, "value": v, "measured_at": readings[n].measured_at} for n, v in fused.kept]
    excluded = [{"node_id": n, "value": v, "reason": why} for n, v, why in fused.excluded]
    return aggregate(group, epoch, round_, issued_at, fused.value, kept, excluded)
