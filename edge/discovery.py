"""Discovery: one ephemeral znode per live node, ``groups/<g>/nodes/<node_id>``.

The znode holds the node's identity (id, host, pid, start time, software version) and its
counters. Ephemerals are not re-created by ZooKeeper or kazoo after a lost session, so the
node's membership thread calls `Membership.register` on every CONNECTED (and every few
seconds, which also refreshes the counters). A kill -9'd earlier process with the same id
still holds the znode until its session expires; `register` then waits it out.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable

from kazoo.exceptions import KazooException
from kazoo.exceptions import NodeExistsError

from edge.events import EventLog

log = logging.getLogger(__name__)


class Membership:
    """This node's discovery znode.

    Parameters
    ----------
    zk
        The process's `KazooClient`.
    path
        ``<root>/groups/<g>/nodes/<node_id>``.
    status
        Returns the JSON-able data to publish.
    events
        Event log (``registered``).
    """

    def __init__(self, zk, path: str, status: Callable[[], dict], events: EventLog) -> None:
        self.zk = zk
        self.path = path
        self.status = status
        self.events = events

    def register(self, publish: bool) -> bool:
        """Create the znode, or refresh its data when `publish`; False while another session holds it."""
        data = json.dumps(self.status()).encode()
        try:
            self.zk.create(self.path, data, ephemeral=True, makepath=True)
            log.info("registered %s", self.path)
            self.events.write("registered")
            return True
        except NodeExistsError:
            pass
        stat = self.zk.exists(self.path)
        if stat is not None and stat.ephemeralOwner == self.zk.client_id[0]:
            if publish:
                self.zk.set(self.path, data, version=stat.version)
            return True
        log.info("%s is held by another session (an earlier process?); waiting for it to expire", self.path)
        return False

    def deregister(self) -> None:
        """Leave first on a planned stop, so a new leader's round does not wait for this node."""
        try:
            self.zk.delete(self.path)
        except KazooException as exc:  # best effort: zk.stop() removes it moments later anyway
            log.info("could not leave discovery early: %s", exc.__class__.__name__)
