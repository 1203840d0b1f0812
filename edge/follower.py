"""The follower: answer each trigger of another node's leader with this node's reading.

The follower thread waits for the ``sequence_trigger`` DataWatch, answers each (epoch, round)
at most once, never a trigger of its own term (the leader measures directly), and not while
the connection is suspended. Its reading goes on the group's `LockingQueue`; the leader reads
it from there (`edge.rounds`).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable

from kazoo.exceptions import KazooException
from kazoo.recipe.queue import LockingQueue

from contracts.zk_layout import GroupZnodes
from edge.events import Counters
from edge.events import EventLog
from edge.schema import Reading
from edge.sources import Source
from edge.sources import SourceError
from edge.state import NodeState
from edge.state import now_ms

log = logging.getLogger(__name__)


def parse_trigger(data: bytes | None, counts: Counters) -> dict | None:
    """The trigger document in `data`, or None (counted and logged) when it is malformed.

    >>> counts = Counters()
    >>> parse_trigger(b'{"round": 3, "epoch": 1, "issued_at": 5}', counts)
    {'round': 3, 'epoch': 1, 'issued_at': 5}
    >>> parse_trigger(b'{"round": "3"}', counts), counts["bad_triggers"]
    (None, 1)
    """
    try:
        trigger = json.loads(data or b"null")
        if isinstance(trigger, dict) and all(isinstance(trigger.get(k), int) for k in ("round", "epoch")):
            return trigger
    except ValueError:
        pass
    counts.add("bad_triggers")
    log.error("ignoring malformed trigger %r", data)
    return None


class Follower:
    """This node's answers to the leader's triggers.

    Parameters
    ----------
    zk
        The process's `KazooClient`.
    node_id
        This node's id.
    source
        Where this node's readings come from (the leader measures through `measure` too).
    paths, state
        The group's znodes; what the callbacks recorded.
    leading_epoch
        The epoch this node leads in, or None.
    counts, events
        Where failures are counted and readings logged.
    """

    def __init__(self, zk, node_id: str, source: Source, paths: GroupZnodes, state: NodeState,
                 leading_epoch: Callable[[], int | None], counts: Counters, events: EventLog) -> None:
        self.zk = zk
        self.node_id = node_id
        self.source = source
        self.paths = paths
        self.state = state
        self.leading_epoch = leading_epoch
        self.counts = counts
        self.events = events

    def run(self) -> None:
        """The follower thread: until shutdown, answer each new trigger once."""
        state = self.state
        queue = LockingQueue(self.zk, self.paths.queue)
        answered: tuple[int, int] = (-1, -1)
        while not state.shutdown.is_set():
            if not state.trigger_ready.wait(1.0) or state.shutdown.is_set():
                continue
            state.trigger_ready.clear()
            trigger = parse_trigger(state.latest_trigger, self.counts)
            if trigger is None or (trigger["epoch"], trigger["round"]) <= answered:
                continue
            answered = (trigger["epoch"], trigger["round"])
            if trigger["epoch"] == self.leading_epoch() or not state.connected():
                continue
            self.answer(queue, trigger)

    def answer(self, queue: LockingQueue, trigger: dict) -> None:
        """Measure for `trigger` and put the reading on `queue` (a failed put is counted)."""
        reading = self.measure(trigger["round"], trigger["epoch"])
        if reading is None:
            return
        # Logged as measured before the put: a put that fails on a connection loss may still
        # have created its entry, which the leader then counts.
        self.events.write("reading", epoch=reading.epoch, round=reading.round, value=reading.value,
                          measured_at=reading.measured_at)
        try:
            queue.put(reading.to_bytes())
        except KazooException as exc:
            self.counts.add("put_failed")
            log.warning("reading for round %d may not be queued: %s", reading.round, exc.__class__.__name__)

    def measure(self, round_: int, epoch: int) -> Reading | None:
        """This node's reading for `round_` of `epoch`, or None (counted) when the source fails."""
        try:
            value = self.source.read()
        except SourceError as exc:
            self.counts.add("source_errors")
            log.warning("no reading for round %d: %s", round_, exc)
            return None
        return Reading(self.node_id, round_, epoch, value, now_ms())
