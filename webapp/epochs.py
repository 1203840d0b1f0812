"""Epochs proved by ZooKeeper: an aggregate may move its group's fence only to an epoch that
the group's election issued.

An edge leader's epoch is the sequence number of its election lock node, and it publishes
that epoch in ``<root>/groups/<group>/epoch`` (a transaction fenced by the lock node) before
its first round. Storage keeps the newest accepted epoch per group and answers 409 to older
ones; without this check one request with a huge epoch would move that fence beyond every
real leader, and the group would stop storing (every leader refused, stepping down, again).

ZooKeeper is asked only when an aggregate carries an epoch above the newest one this process
has verified for the group: once per leadership change, after a ``sync`` so a lagging server
cannot refuse a new leader. Only verified groups are remembered, so a flood of made-up group
names costs no memory here.
"""
from __future__ import annotations

import json
import logging
import threading

from kazoo.exceptions import KazooException
from kazoo.exceptions import NoNodeError

from contracts.zk_layout import ZkLayout
from webapp.errors import DependencyUnavailable
from webapp.errors import UnverifiedEpoch

log = logging.getLogger(__name__)


class EpochVerifier:
    """Admits an aggregate's epoch if its group's ZooKeeper election issued it.

    Parameters
    ----------
    zk
        The app's started kazoo client, or None when ``ZK_HOSTS`` is unset.
    root
        The AeroGuard root in ZooKeeper (``ZK_ROOT``).
    strict
        Production: every epoch must be proved, so an unknown group or a missing ZooKeeper
        is refused. Otherwise (the local demo, tests) a group ZooKeeper has never seen is
        admitted unverified; a group it knows is always verified.
    """

    def __init__(self, zk, root: str, strict: bool):
        self.zk = zk
        self.layout = ZkLayout(root)
        self.strict = strict
        self._verified: dict[str, int] = {}
        self._lock = threading.Lock()

    def admit(self, group: str, epoch: int) -> None:
        """Return if `epoch` may be stored for `group`; raise `UnverifiedEpoch` (403) if
        ZooKeeper issued no such epoch, `DependencyUnavailable` (503) if it cannot say."""
        with self._lock:
            if epoch <= self._verified.get(group, -1):
                return
        issued = self._issued(group)
        if issued is None:
            if self.strict:
                raise UnverifiedEpoch(f"group {group} has no leader in ZooKeeper: epoch {epoch} cannot be proved")
            return
        if epoch > issued:
            log.warning("refused epoch %d for group %s: ZooKeeper issued %d", epoch, group, issued)
            raise UnverifiedEpoch(f"epoch {epoch} of group {group} was not issued by its election "
                                  f"(newest issued: {issued})", issued_epoch=issued)
        with self._lock:
            self._verified[group] = max(issued, self._verified.get(group, -1))

    def _issued(self, group: str) -> int | None:
        """The newest epoch published for `group` (-1: none yet), None if ZooKeeper does not know
        the group (or there is no ZooKeeper here)."""
        if self.zk is None:
            if self.strict:
                raise DependencyUnavailable("ZooKeeper is not configured (ZK_HOSTS): epochs cannot be proved")
            return None
        if not self.zk.connected:
            raise DependencyUnavailable("ZooKeeper is not reachable: the epoch cannot be proved, retry")
        path = self.layout.group(group).epoch
        try:
            self.zk.sync(path)
            data, _ = self.zk.get(path)
        except NoNodeError:
            return None
        except KazooException as exc:
            raise DependencyUnavailable(f"ZooKeeper: {exc.__class__.__name__}: the epoch cannot be proved, retry")
        try:
            epoch = json.loads(data).get("epoch")
        except (ValueError, AttributeError):
            epoch = None  # a group ZooKeeper knows, whose first leader has not published yet
        return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else -1
