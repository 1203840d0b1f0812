"""One round at the leader: take the queue's entries, classify them, build the aggregate.

The group's `LockingQueue` is at-least-once and its entries outlive rounds and leaders, so
every entry the leader takes is consumed and classified: *accepted* (this epoch and round,
first from that node), *duplicate* (that node again), *late* (an older epoch or round: counted,
never used in this round), *ahead* (a newer epoch: a newer leader exists) or *invalid*. Once
every live node answered, or at the deadline, the collector still takes what is already queued
(without waiting), so older entries are handled at once and the queue stays small.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

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
    """Collects one round's readings from the queue for the leader.

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
        self.node_id = node_id
        self.live = live
        self.connected = connected
        self.counts = counts
        self.events = events

    def collect(self, epoch: int, round_: int, readings: dict[str, Reading], deadline: float) -> None:
        """Take readings until every live node answered or `deadline`; handle every entry taken.

        Raises
        ------
        RoundAborted
            When the connection is suspended while collecting.
        """
        expected = set(self.live()) | {self.node_id}
        for _ in range(MAX_ENTRIES_PER_ROUND):
            if not self.connected():
                raise RoundAborted("connection suspended while collecting")
            waiting = not expected <= readings.keys()
            raw = self.queue.get(timeout=max(deadline - time.monotonic(), 0.0) if waiting else 0.0)
            if raw is None:
                break
            if not self.queue.consume():
                self.queue.processing_element = None  # our entry lock is gone; the entry comes back
            self.classify(raw, epoch, round_, readings)
            expected |= set(self.live())
        missing = sorted(expected - readings.keys())
        if missing:
            self.counts.add("missing_readings", len(missing))
            self.events.write("missing", epoch=epoch, round=round_, nodes=missing)

    def classify(self, raw: bytes, epoch: int, round_: int, readings: dict[str, Reading]) -> str:
        """Accept a reading of this round once; count (never use) anything else. Returns its kind."""
        try:
            reading = Reading.from_bytes(raw)
        except SchemaError as exc:
            self.counts.add("invalid_readings")
            log.error("invalid queue entry dropped: %s", exc)
            return "invalid"
        if (reading.epoch, reading.round) == (epoch, round_):
            kind = "duplicate" if reading.node_id in readings else "accepted"
            readings.setdefault(reading.node_id, reading)
        elif (reading.epoch, reading.round) < (epoch, round_):
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
