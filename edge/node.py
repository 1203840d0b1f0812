"""EdgeNode: discovery, leader election with fencing, and trigger rounds of one sensor node.

Every node registers an ephemeral znode ``groups/<g>/nodes/<id>`` (re-created after a lost
session), watches ``sequence_trigger`` and answers each trigger by putting its reading on
the group's `LockingQueue`. Nodes contend in a kazoo `Election`; the winner's epoch is its
lock node's sequence number, strictly increasing across leaders. The leader writes each
trigger in a transaction that first checks its own lock node (a paused or cut-off old
leader's write fails), collects the round's readings until every live node answered or
the round deadline, fuses them and hands the aggregate to `edge.delivery`.

The connection-state listener only records state and signals: on SUSPENDED the leader stops
triggering and delivering at once; on LOST it leaves leadership, and the membership thread
re-registers after reconnecting; a leader resumes after SUSPENDED only if its trigger
transaction still passes the fence.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass

from kazoo.exceptions import KazooException
from kazoo.exceptions import NoNodeError
from kazoo.protocol.states import KazooState
from kazoo.recipe.election import Election
from kazoo.recipe.queue import LockingQueue
from kazoo.retry import KazooRetry

from edge import __version__
from edge.config import EdgeSettings
from edge.delivery import Delivery
from edge.delivery import Spool
from edge.events import Counters
from edge.events import EventLog
from edge.hotconfig import EdgeConfig
from edge.hotconfig import HotConfig
from edge.discovery import Membership
from edge.rounds import Collector
from edge.rounds import RoundAborted
from edge.rounds import build_aggregate
from edge.schema import Reading
from edge.sources import Source
from edge.sources import SourceError

log = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 10.0
STATUS_EVERY_S = 5.0


class Fenced(Exception):
    """Raised when the leader's fenced write fails: its lock node is gone, it leads no more."""


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Term:
    """One leadership term: the epoch, the lock node, and the last round issued."""

    epoch: int
    lock_path: str
    lost_count: int
    last_round: int = 0
    last_issued: int = 0


class GroupPaths:
    """The znodes of one group (ARCHITECTURE.md, "ZooKeeper layout")."""

    def __init__(self, root: str, group: str) -> None:
        base = f"{root}/groups/{group}"
        self.nodes = f"{base}/nodes"
        self.election = f"{base}/election"
        self.epoch = f"{base}/epoch"
        self.trigger = f"{base}/sequence_trigger"
        self.queue = f"{base}/queue"


class EdgeNode:
    """One sensor node of a group; every node can lead.

    Parameters
    ----------
    zk
        A started `KazooClient` (settings per RELIABILITY.md); `stop` stops and closes it.
    settings
        The node's static settings.
    source
        Where this node's readings come from.
    events
        Optional event log (drills, fault tests).
    """

    def __init__(self, zk, settings: EdgeSettings, source: Source, events: EventLog | None = None) -> None:
        self.zk = zk
        self.settings = settings
        self.source = source
        self.events = events or EventLog(None)
        self.paths = GroupPaths(settings.zk_root, settings.group)
        self.started_at = now_ms()
        self.counts = Counters()
        self.hotconfig = HotConfig(zk, settings.zk_root, settings.group, settings.defaults, self._on_config,
                                   lambda exc: self.events.write("config_rejected", error=str(exc)))
        self.delivery = Delivery(Spool(settings.spool_dir, settings.spool_max), lambda: self.hotconfig.current,
                                 self.connected, self._on_stale, settings.api_key, self.events)
        self.membership = Membership(zk, f"{self.paths.nodes}/{settings.node_id}", self.status, self.events)
        self._lock = threading.Lock()
        self._state = KazooState.CONNECTED if zk.connected else KazooState.SUSPENDED
        self._lost_count = 0
        self._live: frozenset[str] = frozenset()
        self._term: Term | None = None
        self._step_down = threading.Event()
        self._shutdown = threading.Event()
        self._wake = threading.Event()
        self._membership_due = threading.Event()
        self._trigger_ready = threading.Event()
        self._latest_trigger: bytes | None = None
        self._election: Election | None = None
        self.crashed = threading.Event()
        self._threads = [threading.Thread(target=self._guard, args=(loop,), name=loop.__name__, daemon=True)
                         for loop in (self._elect_loop, self._follow_loop, self._membership_loop)]

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Install watches, register, and start the election, follower and delivery threads."""
        self.zk.add_listener(self._on_state)
        for path in (self.paths.nodes, self.paths.election, self.paths.queue, self.paths.epoch,
                     self.paths.trigger):
            self.zk.ensure_path(path)
        self.hotconfig.start()
        self.zk.ChildrenWatch(self.paths.nodes, self._on_nodes)
        self.zk.DataWatch(self.paths.trigger, self._on_trigger)
        self._membership_due.set()
        self.delivery.start()
        for thread in self._threads:
            thread.start()
        log.info("node %s/%s started (pid %d, session timeout requested %.1f s, config %s)",
                 self.settings.group, self.settings.node_id, os.getpid(),
                 self.settings.session_timeout_s, self.hotconfig.current)

    def stop(self) -> None:
        """Leave the election, join every thread, spool what is unsent, then close ZooKeeper."""
        self._shutdown.set()
        for event in (self._wake, self._membership_due, self._trigger_ready):
            event.set()
        self.membership.deregister()
        election = self._election
        if election is not None:
            election.cancel()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(JOIN_TIMEOUT_S)
        self.delivery.stop()
        self.zk.remove_listener(self._on_state)
        self.zk.stop()
        self.zk.close()
        self.events.write("stopped")
        self.events.close()
        log.info("node %s stopped", self.settings.node_id)

    def _guard(self, loop) -> None:
        """Run one of the node's loops; a bug there must end the process, not leave a half node."""
        try:
            loop()
        except Exception:
            log.exception("%s crashed: the node stops", loop.__name__)
            self.crashed.set()

    # --- what the node reports -------------------------------------------------------------

    def connected(self) -> bool:
        with self._lock:
            return self._state == KazooState.CONNECTED

    @property
    def epoch(self) -> int | None:
        """The epoch this node leads in, or None when it does not lead."""
        term = self._term
        return term.epoch if term else None

    def status(self) -> dict:
        """Discovery data: identity plus counters (published every few seconds)."""
        return {"node_id": self.settings.node_id, "host": self.settings.hostname, "pid": os.getpid(),
                "started_at": self.started_at, "version": __version__, "leader_epoch": self.epoch,
                "config_applied": self.hotconfig.applied, "config_errors": self.hotconfig.errors,
                "counts": self.counts.snapshot(), "delivery": self.delivery.counts.snapshot(),
                "backlog": self.delivery.backlog(), "spool_dropped": self.delivery.spool.dropped,
                "refused_kept": len(self.delivery.refused)}

    # --- callbacks: record and signal only (they run on kazoo's threads) ---------------------

    def _on_state(self, state: str) -> None:
        with self._lock:
            self._state = state
            if state == KazooState.LOST:
                self._lost_count += 1
        if state == KazooState.CONNECTED:
            self._membership_due.set()
        self._wake.set()
        self.events.write("zk_state", state=state)

    def _on_nodes(self, children: list[str]) -> None:
        self._live = frozenset(children)
        self._wake.set()

    def _on_trigger(self, data: bytes | None, stat) -> None:
        if data:
            self._latest_trigger = data
            self._trigger_ready.set()

    def _on_config(self, config: EdgeConfig) -> None:
        self.events.write("config", config={k: v for k, v in config.__dict__.items()})
        self._wake.set()

    def _on_stale(self, epoch: int, newest: int | None) -> None:
        self.counts.add("stale_epoch_answers")
        if epoch == self.epoch:
            log.warning("web tier knows a newer epoch %s than ours (%d): stepping down", newest, epoch)
            self._step_down.set()
            self._wake.set()

    # --- membership ------------------------------------------------------------------------

    def _membership_loop(self) -> None:
        published = 0.0
        while not self._shutdown.is_set():
            signalled = self._membership_due.wait(1.0)
            self._membership_due.clear()
            due = time.monotonic() - published > STATUS_EVERY_S
            if self._shutdown.is_set() or not self.connected() or not (signalled or due):
                continue
            try:
                if self.membership.register(publish=due):
                    published = time.monotonic() if due else published
                else:
                    self._shutdown.wait(0.5)
                    self._membership_due.set()
            except KazooException as exc:
                log.warning("discovery registration failed (%s); retrying", exc.__class__.__name__)
                self._shutdown.wait(0.5)
                self._membership_due.set()

    # --- follower --------------------------------------------------------------------------

    def _follow_loop(self) -> None:
        queue = LockingQueue(self.zk, self.paths.queue)
        answered: tuple[int, int] = (-1, -1)
        while not self._shutdown.is_set():
            if not self._trigger_ready.wait(1.0) or self._shutdown.is_set():
                continue
            self._trigger_ready.clear()
            trigger = self._parse_trigger(self._latest_trigger)
            if trigger is None or (trigger["epoch"], trigger["round"]) <= answered:
                continue
            answered = (trigger["epoch"], trigger["round"])
            if trigger["epoch"] == self.epoch or not self.connected():
                continue
            self._answer(queue, trigger)

    def _parse_trigger(self, data: bytes | None) -> dict | None:
        try:
            trigger = json.loads(data or b"null")
            if isinstance(trigger, dict) and all(isinstance(trigger.get(k), int) for k in ("round", "epoch")):
                return trigger
        except ValueError:
            pass
        self.counts.add("bad_triggers")
        log.error("ignoring malformed trigger %r", data)
        return None

    def _answer(self, queue: LockingQueue, trigger: dict) -> None:
        reading = self._measure(trigger["round"], trigger["epoch"])
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

    def _measure(self, round_: int, epoch: int) -> Reading | None:
        try:
            value = self.source.read()
        except SourceError as exc:
            self.counts.add("source_errors")
            log.warning("no reading for round %d: %s", round_, exc)
            return None
        return Reading(self.settings.node_id, round_, epoch, value, now_ms())

    # --- election and leadership -----------------------------------------------------------

    def _elect_loop(self) -> None:
        while not self._shutdown.is_set():
            if not self.connected():
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            election = Election(self.zk, self.paths.election, self.settings.node_id)
            # The lock's own retry backs off to 60 s between attempts; a contender waiting out
            # a ZooKeeper outage would then rejoin up to a minute late.
            election.lock._retry = KazooRetry(max_tries=None, max_delay=1.0,
                                              sleep_func=self.zk.handler.sleep_func)
            self._election = election
            if self._shutdown.is_set():  # stop() may have cancelled the previous one just now
                break
            try:
                election.run(self._lead, election)
            except KazooException as exc:
                log.warning("election interrupted (%s); rejoining", exc.__class__.__name__)
            finally:
                self._leave(election)
            self._shutdown.wait(0.1)

    def _leave(self, election: Election) -> None:
        """Make sure none of our lock nodes outlives this attempt (it would block the group)."""
        lost_before = self._lost_count
        while not self._shutdown.is_set():  # on shutdown, zk.stop() removes our nodes at once
            if self._lost_count != lost_before:
                return  # the session (and with it every lock node of ours) is gone
            try:
                for child in self.zk.get_children(self.paths.election):
                    if child.startswith(election.lock.prefix):
                        self.zk.delete(f"{self.paths.election}/{child}")
                return
            except NoNodeError:
                continue
            except KazooException:
                self._shutdown.wait(0.2)

    def _lead(self, election: Election) -> None:
        name = election.lock.node
        term = Term(int(name[-10:]), f"{self.paths.election}/{name}", self._lost_count)
        self._step_down.clear()
        try:
            self._begin_term(term)
        except (Fenced, KazooException) as exc:
            log.warning("could not begin term %d: %s", term.epoch, exc.__class__.__name__)
            return
        self._term = term
        log.info("leading group %s with epoch %d from round %d", self.settings.group, term.epoch,
                 term.last_round + 1)
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
        previous = self._parse_trigger(data) if data else None
        previous = previous or {}
        term.last_round = previous.get("round", 0)
        term.last_issued = previous.get("issued_at", 0) if isinstance(previous.get("issued_at"), int) else 0
        if previous.get("epoch", -1) >= term.epoch:
            log.error("epoch %d is not above the last trigger's %s: was the election znode recreated?",
                      term.epoch, previous.get("epoch"))
        doc = {"epoch": term.epoch, "leader": self.settings.node_id, "lock_node": term.lock_path,
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

    def _lead_rounds(self, term: Term) -> None:
        collector = Collector(LockingQueue(self.zk, self.paths.queue), self.settings.node_id, lambda: self._live,
                              self.connected, self.counts, self.events)
        last_start: float | None = None
        while not self._shutdown.is_set() and not self._step_down.is_set():
            self._wake.clear()
            if self._lost_count != term.lost_count:
                log.warning("session lost: leaving leadership of epoch %d", term.epoch)
                return
            if not self.connected():
                last_start = None  # resume on reconnect from now: no burst of back-filled rounds
                self._wake.wait(0.5)
                continue
            config = self.hotconfig.current
            now = time.monotonic()
            if last_start is not None and now < last_start + config.sampling_period_s:
                self._wake.wait(last_start + config.sampling_period_s - now)
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
        own = self._measure(round_, term.epoch)
        if own is not None:
            readings[own.node_id] = own
            self.events.write("reading", epoch=term.epoch, round=round_, value=own.value,
                              measured_at=own.measured_at)
        collector.collect(term.epoch, round_, readings, time.monotonic() + config.round_timeout)
        if not self.connected():
            raise RoundAborted("connection suspended before delivery")
        if readings:
            doc = build_aggregate(self.settings.group, term.epoch, round_, issued_at, readings, config)
            self.counts.add("aggregates")
            self.counts.add("excluded", len(doc["excluded"]))
            self.events.write("aggregate", doc=doc)
            self.delivery.submit(doc)
        else:
            self.counts.add("rounds_empty")
            self.events.write("round_empty", epoch=term.epoch, round=round_)
        collector.sweep(term.epoch, round_)
