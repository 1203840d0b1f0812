"""The leader: election with lock-node clean-up, fencing, and the round loop.

Nodes contend in a kazoo `Election` (a fresh one per attempt); the winner's epoch is its lock
node's sequence number, strictly increasing across leaders. Every leader write is a
transaction that first checks the leader's own lock node, so a paused or cut-off old leader's
write fails (`Fenced`) and it steps down. Each round the leader writes the trigger, measures
itself, collects the followers' readings until every live node answered or the round
deadline (`edge.rounds`), fuses them and hands the aggregate to `edge.delivery`.

On SUSPENDED the leader stops triggering and delivering at once; on LOST it leaves the term;
it resumes after SUSPENDED only if its next trigger transaction still passes the fence.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from kazoo.exceptions import KazooException
from kazoo.exceptions import NoNodeError
from kazoo.recipe.election import Election
from kazoo.recipe.queue import LockingQueue

from contracts.zk_layout import GroupZnodes
from edge import kazoo_compat
from edge.delivery import Delivery
from edge.events import Counters
from edge.events import EventLog
from edge.follower import parse_trigger
from edge.hotconfig import EdgeConfig
from edge.hotconfig import HotConfig
from edge.rounds import Collector
from edge.rounds import RoundAborted
from edge.rounds import build_aggregate
from edge.schema import Reading
from edge.state import NodeState
from edge.state import now_ms

log = logging.getLogger(__name__)


class Fenced(Exception):
    """Raised when the leader's fenced write fails: its lock node is gone, it leads no more."""


@dataclass
class Term:
    """One leadership term: the epoch, the lock node, and the last round issued."""

    epoch: int
    lock_path: str
    lost_count: int
    last_round: int = 0
    last_issued: int = 0


class Leader:
    """This node's contention for leadership, and its terms.

    Parameters
    ----------
    zk
        The process's `KazooClient`.
    node_id, group
        This node's id (its election identifier) and group.
    paths, state
        The group's znodes; what the callbacks recorded.
    hotconfig
        The applied configuration (sampling period, round timeout, fusion).
    delivery
        Where each round's aggregate goes.
    measure
        This node's own reading for (round, epoch), or None.
    counts, events
        Where rounds are counted and logged.
    """

    def __init__(self, zk, node_id: str, group: str, paths: GroupZnodes, state: NodeState, hotconfig: HotConfig,
                 delivery: Delivery, measure: Callable[[int, int], Reading | None], counts: Counters,
                 events: EventLog) -> None:
        self.zk = zk
        self.node_id = node_id
        self.group = group
        self.paths = paths
        self.state = state
        self.hotconfig = hotconfig
        self.delivery = delivery
        self.measure = measure
        self.counts = counts
        self.events = events
        self._term: Term | None = None
        self._election: Election | None = None

    @property
    def epoch(self) -> int | None:
        """The epoch this node leads in, or None when it does not lead."""
        term = self._term
        return term.epoch if term else None

    def cancel(self) -> None:
        """Leave the election now (on stop)."""
        election = self._election
        if election is not None:
            election.cancel()

    # --- election --------------------------------------------------------------------------

    def run(self) -> None:
        """The election thread: contend until shutdown, leading whenever elected."""
        state = self.state
        while not state.shutdown.is_set():
            if not state.connected():
                state.wake.wait(0.5)
                state.wake.clear()
                continue
            election = kazoo_compat.election(self.zk, self.paths.election, self.node_id)
            self._election = election
            if state.shutdown.is_set():  # stop() may have cancelled the previous one just now
                break
            try:
                election.run(self._lead, election)
            except KazooException as exc:
                log.warning("election interrupted (%s); rejoining", exc.__class__.__name__)
            finally:
                self._leave(election)
            state.shutdown.wait(0.1)

    def _leave(self, election: Election) -> None:
        """Make sure none of our lock nodes outlives this attempt (it would block the group)."""
        state = self.state
        lost_before = state.lost_count
        while not state.shutdown.is_set():  # on shutdown, zk.stop() removes our nodes at once
            if state.lost_count != lost_before:
                return  # the session (and with it every lock node of ours) is gone
            try:
                kazoo_compat.delete_own_lock_nodes(self.zk, election)
                return
            except NoNodeError:
                continue
            except KazooException:
                state.shutdown.wait(0.2)

    # --- a term and its fence ----------------------------------------------------------------

    def _lead(self, election: Election) -> None:
        name = kazoo_compat.lock_node(election)
        term = Term(kazoo_compat.sequence(name), f"{self.paths.election}/{name}", self.state.lost_count)
        self.state.step_down.clear()
        try:
            self._begin_term(term)
        except (Fenced, KazooException) as exc:
            log.warning("could not begin term %d: %s", term.epoch, exc.__class__.__name__)
            return
        self._term = term
        log.info("leading group %s with epoch %d from round %d", self.group, term.epoch, term.last_round + 1)
        self.events.write("leader", epoch=term.epoch, first_round=term.last_round + 1)
        try:
            self._lead_rounds(term)
        finally:
            self._term = None
            self.events.write("leader_end", epoch=term.epoch, last_round=term.last_round)
            log.info("leadership of epoch %d ended", term.epoch)

    def _begin_term(self, term: Term) -> None:
        """Read the last round, then publish our epoch in a transaction fenced by our lock node."""
        try:
            data, _ = self.zk.get(self.paths.trigger)
        except NoNodeError:
            data = None
        previous = parse_trigger(data, self.counts) if data else None
        previous = previous or {}
        term.last_round = previous.get("round", 0)
        term.last_issued = previous.get("issued_at", 0) if isinstance(previous.get("issued_at"), int) else 0
        if previous.get("epoch", -1) >= term.epoch:
            log.error("epoch %d is not above the last trigger's %s: was the election znode recreated?",
                      term.epoch, previous.get("epoch"))
        doc = {"epoch": term.epoch, "leader": self.node_id, "lock_node": term.lock_path,
               "since": now_ms(), "first_round": term.last_round + 1,
               "previous": {"epoch": previous.get("epoch"), "round": previous.get("round")}}
        self._fenced_set(term, self.paths.epoch, doc)

    def _fenced_set(self, term: Term, path: str, doc: dict) -> None:
        transaction = self.zk.transaction()
        transaction.check(term.lock_path, 0)
        transaction.set_data(path, json.dumps(doc).encode())
        results = transaction.commit()
        failures = [r.__class__.__name__ for r in results if isinstance(r, Exception)]
        if failures:
            raise Fenced(f"fenced write to {path} failed: {', '.join(failures)}")

    # --- rounds ------------------------------------------------------------------------------

    def _lead_rounds(self, term: Term) -> None:
        state = self.state
        collector = Collector(LockingQueue(self.zk, self.paths.queue), self.node_id, lambda: state.live,
                              state.connected, self.counts, self.events)
        last_start: float | None = None
        while not state.shutdown.is_set() and not state.step_down.is_set():
            state.wake.clear()
            if state.lost_count != term.lost_count:
                log.warning("session lost: leaving leadership of epoch %d", term.epoch)
                return
            if not state.connected():
                last_start = None  # resume on reconnect from now: no burst of back-filled rounds
                state.wake.wait(0.5)
                continue
            config = self.hotconfig.current
            now = time.monotonic()
            if last_start is not None and now < last_start + config.sampling_period_s:
                state.wake.wait(last_start + config.sampling_period_s - now)
                continue
            last_start = now
            try:
                self._round(term, collector, config)
            except Fenced as exc:
                log.warning("epoch %d fenced off (%s): stepping down", term.epoch, exc)
                self.counts.add("fenced")
                return
            except (RoundAborted, KazooException) as exc:
                self.counts.add("rounds_aborted")
                log.warning("round %d aborted: %s", term.last_round, exc.__class__.__name__)

    def _round(self, term: Term, collector: Collector, config: EdgeConfig) -> None:
        round_ = term.last_round + 1
        issued_at = max(now_ms(), term.last_issued + 1)
        self._fenced_set(term, self.paths.trigger, {"round": round_, "epoch": term.epoch, "issued_at": issued_at})
        term.last_round, term.last_issued = round_, issued_at
        self.counts.add("rounds")
        self.events.write("trigger", epoch=term.epoch, round=round_, issued_at=issued_at)
        readings: dict[str, Reading] = {}
        own = self.measure(round_, term.epoch)
        if own is not None:
            readings[own.node_id] = own
            self.events.write("reading", epoch=term.epoch, round=round_, value=own.value,
                              measured_at=own.measured_at)
        collector.collect(term.epoch, round_, readings, time.monotonic() + config.round_timeout)
        if not self.state.connected():
            raise RoundAborted("connection suspended before delivery")
        if readings:
            doc = build_aggregate(self.group, term.epoch, round_, issued_at, readings, config)
            self.counts.add("aggregates")
            self.counts.add("excluded", len(doc["excluded"]))
            self.events.write("aggregate", doc=doc)
            self.delivery.submit(doc)
        else:
            self.counts.add("rounds_empty")
            self.events.write("round_empty", epoch=term.epoch, round=round_)
        collector.sweep(term.epoch, round_)
