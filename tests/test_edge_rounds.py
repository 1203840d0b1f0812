"""The leader's collection of a round from a real LockingQueue: classification and sweeping."""
from __future__ import annotations

import threading
import time

from kazoo.recipe.queue import LockingQueue

from edge.events import Counters
from edge.events import EventLog
from edge.rounds import Collector
from edge.schema import Reading


def _collector(zk, live=("leader", "n1", "n2")):
    queue = LockingQueue(zk, "/g/queue")
    return queue, Collector(queue, "leader", lambda: frozenset(live), lambda: True, Counters(), EventLog(None))


def test_collect_classifies_every_entry_once_and_stops_when_all_answered(zk):
    queue, collector = _collector(zk)
    for reading in (Reading("n1", 4, 7, 20.0, 1), Reading("n1", 5, 7, 20.1, 2), Reading("n1", 5, 7, 20.1, 2),
                    Reading("n2", 5, 8, 30.0, 3), Reading("n2", 5, 7, 20.2, 4)):
        queue.put(reading.to_bytes())
    queue.put(b"{broken")
    readings = {"leader": Reading("leader", 5, 7, 20.0, 0)}
    # The round's deadline is an hour away: collect returns at once only if it stops when
    # everyone has answered (within a generous bounded wait), not at its deadline.
    collecting = threading.Thread(target=collector.collect, args=(7, 5, readings, time.monotonic() + 3600),
                                  daemon=True)
    collecting.start()
    collecting.join(30)
    assert not collecting.is_alive()  # everyone answered: no wait for the deadline
    assert {n: r.value for n, r in readings.items()} == {"leader": 20.0, "n1": 20.1, "n2": 20.2}
    counts = collector.counts.snapshot()
    assert counts == {"readings_late": 1, "readings_accepted": 2, "readings_duplicate": 1, "readings_ahead": 1,
                      "invalid_readings": 1}


def test_sweep_consumes_everything_and_late_arrivals_count_as_late(zk):
    queue, collector = _collector(zk)
    queue.put(Reading("n1", 5, 7, 20.1, 2).to_bytes())
    readings = {}
    collector.collect(7, 5, readings, time.monotonic() + 0.2)
    assert set(readings) == {"n1"}
    assert collector.counts["missing_readings"] == 2
    queue.put(Reading("n2", 5, 7, 20.2, 4).to_bytes())  # after the round closed
    collector.sweep(7, 5)
    assert len(queue) == 0
    assert collector.counts["readings_late"] == 1 and collector.counts["readings_accepted"] == 1
