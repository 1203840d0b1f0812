"""What a node's threads share: what kazoo's callbacks recorded.

The callbacks (in `edge.node`) run on kazoo's threads and only record here and signal; the
election (`edge.leader`), follower (`edge.follower`) and membership threads act on it.
"""
from __future__ import annotations

import threading
import time

from kazoo.protocol.states import KazooState


def now_ms() -> int:
    return int(time.time() * 1000)


class NodeState:
    """The connection state, live nodes and latest trigger, and the events the threads wait on.

    Parameters
    ----------
    connected
        Whether the client is connected when the node is built.
    """

    def __init__(self, connected: bool) -> None:
        self._lock = threading.Lock()
        self._state = KazooState.CONNECTED if connected else KazooState.SUSPENDED
        self.lost_count = 0  # sessions lost so far: a term or attempt ends when it changes
        self.live: frozenset[str] = frozenset()
        self.latest_trigger: bytes | None = None
        self.shutdown = threading.Event()
        self.wake = threading.Event()  # the state, live nodes, config or a step-down changed
        self.step_down = threading.Event()
        self.membership_due = threading.Event()
        self.trigger_ready = threading.Event()

    def connected(self) -> bool:
        with self._lock:
            return self._state == KazooState.CONNECTED

    def record(self, state: str) -> None:
        """Record a connection state (kazoo's listener) and signal the threads that wait on it."""
        with self._lock:
            self._state = state
            if state == KazooState.LOST:
                self.lost_count += 1
        if state == KazooState.CONNECTED:
            self.membership_due.set()
        self.wake.set()
