"""EdgeNode: one sensor node of a group, its lifecycle, kazoo callbacks and discovery.

Every node registers an ephemeral znode ``groups/<g>/nodes/<id>`` (re-created after a lost
session), watches ``sequence_trigger`` and the live nodes, and runs three threads: the
election (`edge.leader`: contend, and while elected fence and run the rounds), the follower
(`edge.follower`: answer each trigger of another leader with a reading on the group's
`LockingQueue`) and membership (below). Their shared state is `edge.state.NodeState`.

The connection-state listener only records state and signals: on SUSPENDED the leader stops
triggering and delivering at once; on LOST it leaves leadership, and the membership thread
re-registers after reconnecting; a leader resumes after SUSPENDED only if its trigger
transaction still passes the fence.
"""
from __future__ import annotations

import logging
import os
import threading
import time

from kazoo.exceptions import KazooException

from contracts.zk_layout import ZkLayout
from edge import __version__
from edge.config import EdgeSettings
from edge.delivery import Delivery
from edge.delivery import Spool
from edge.discovery import Membership
from edge.events import Counters
from edge.events import EventLog
from edge.follower import Follower
from edge.hotconfig import EdgeConfig
from edge.hotconfig import HotConfig
from edge.leader import Leader
from edge.sources import Source
from edge.state import NodeState
from edge.state import now_ms

log = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 10.0
STATUS_EVERY_S = 5.0


class EdgeNode:
    """One sensor node of a group; every node can lead.

    Parameters
    ----------
    zk
        A started `KazooClient` (settings in docs/edge.md, "Kazoo settings"); `stop` stops and closes it.
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
        self.paths = ZkLayout(settings.zk_root).group(settings.group)
        self.started_at = now_ms()
        self.counts = Counters()
        self.state = NodeState(zk.connected)
        self.hotconfig = HotConfig(zk, settings.zk_root, settings.group, settings.defaults, self._on_config,
                                   lambda exc: self.events.write("config_rejected", error=str(exc)))
        self.delivery = Delivery(Spool(settings.spool_dir, settings.spool_max), lambda: self.hotconfig.current,
                                 self.connected, self._on_stale, settings.api_key, self.events)
        self.membership = Membership(zk, self.paths.node(settings.node_id), self.status, self.events)
        self.follower = Follower(zk, settings.node_id, source, self.paths, self.state, lambda: self.epoch,
                                 self.counts, self.events)
        self.leader = Leader(zk, settings.node_id, settings.group, self.paths, self.state, self.hotconfig,
                             self.delivery, self.follower.measure, self.counts, self.events)
        self.crashed = threading.Event()
        self._threads = [threading.Thread(target=self._guard, args=(name, loop), name=name, daemon=True)
                         for name, loop in (("election", self.leader.run), ("follower", self.follower.run),
                                            ("membership", self._membership_loop))]

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
        self.state.membership_due.set()
        self.delivery.start()
        for thread in self._threads:
            thread.start()
        log.info("node %s/%s started (pid %d, session timeout requested %.1f s, config %s)",
                 self.settings.group, self.settings.node_id, os.getpid(),
                 self.settings.session_timeout_s, self.hotconfig.current)

    def stop(self) -> None:
        """Leave the election, join every thread, spool what is unsent, then close ZooKeeper."""
        self.state.shutdown.set()
        for event in (self.state.wake, self.state.membership_due, self.state.trigger_ready):
            event.set()
        self.membership.deregister()
        self.leader.cancel()
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

    def _guard(self, name: str, loop) -> None:
        """Run one of the node's loops; a bug there must end the process, not leave a half node."""
        try:
            loop()
        except Exception:
            log.exception("%s thread crashed: the node stops", name)
            self.crashed.set()

    # --- what the node reports -------------------------------------------------------------

    def connected(self) -> bool:
        return self.state.connected()

    @property
    def epoch(self) -> int | None:
        """The epoch this node leads in, or None when it does not lead."""
        return self.leader.epoch

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
        self.state.record(state)
        self.events.write("zk_state", state=state)

    def _on_nodes(self, children: list[str]) -> None:
        self.state.live = frozenset(children)
        self.state.wake.set()

    def _on_trigger(self, data: bytes | None, stat) -> None:
        if data:
            self.state.latest_trigger = data
            self.state.trigger_ready.set()

    def _on_config(self, config: EdgeConfig) -> None:
        self.events.write("config", config={k: v for k, v in config.__dict__.items()})
        self.state.wake.set()

    def _on_stale(self, epoch: int, newest: int | None) -> None:
        self.counts.add("stale_epoch_answers")
        if epoch == self.epoch:
            log.warning("web tier knows a newer epoch %s than ours (%d): stepping down", newest, epoch)
            self.state.step_down.set()
            self.state.wake.set()

    # --- membership ------------------------------------------------------------------------

    def _membership_loop(self) -> None:
        state = self.state
        published = 0.0
        while not state.shutdown.is_set():
            signalled = state.membership_due.wait(1.0)
            state.membership_due.clear()
            due = time.monotonic() - published > STATUS_EVERY_S
            if state.shutdown.is_set() or not state.connected() or not (signalled or due):
                continue
            try:
                if self.membership.register(publish=due):
                    published = time.monotonic() if due else published
                else:
                    state.shutdown.wait(0.5)
                    state.membership_due.set()
            except KazooException as exc:
                log.warning("discovery registration failed (%s); retrying", exc.__class__.__name__)
                state.shutdown.wait(0.5)
                state.membership_due.set()
