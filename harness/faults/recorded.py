"""Processes of a running ``make up`` stack, known by their stack.json records (not our children).

`RecordedProcess` signals a recorded PID only while it is still the process the launcher
started, and starts it again through `harness.stack.launcher.restart`; `RecordedEdge`,
`RecordedEnsemble` and `RecordedWeb` are the stack's edge nodes, ZooKeeper and web tier.
"""
from __future__ import annotations

import os
import signal
from typing import Callable

from harness.faults.event_logs import EventTail
from harness.process import ServerTimeout
from harness.process import pid_alive
from harness.process import process_start_time
from harness.process import stop_pid
from harness.process import wait_until
from harness.stack import launcher
from harness.stack.config import StackConfig
from harness.stack.services import http_ok


class RecordedProcess:
    """One process of a running stack, known by its stack.json record (it is not our child).

    `start` calls `restart` (``harness.stack.launcher.restart``: the same command line) and adopts the
    new record. Every signal is sent only while the recorded PID is still the process the
    launcher started (same start time), never to a reused PID.
    """

    def __init__(self, rec: dict, restart: Callable[[str], dict]) -> None:
        self.name = rec["name"]
        self.rec = rec
        self._restart = restart

    @property
    def pid(self) -> int:
        return self.rec["pid"]

    def alive(self) -> bool:
        pid = self.rec.get("pid")
        return bool(pid) and pid_alive(pid) and process_start_time(pid) == self.rec.get("start_time")

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL (a crash), and wait until it is gone."""
        self.signal(signal.SIGKILL)
        self._wait_gone(5.0)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGCONT + SIGTERM (a planned stop), SIGKILL after `timeout`."""
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self._wait_gone(timeout)
        except ServerTimeout:
            self.kill()

    def start(self) -> RecordedProcess:
        self.rec = self._restart(self.name)
        return self

    def _wait_gone(self, timeout: float) -> None:
        wait_until(lambda: not self.alive(), timeout, f"{self.name} (pid {self.pid}) to exit")
        try:
            os.waitpid(self.pid, os.WNOHANG)  # reap it if it was our child (restarted by us)
        except ChildProcessError:
            pass

class RecordedEdge(RecordedProcess):
    """An edge node of the running stack: its record, node id and event log."""

    def __init__(self, config: StackConfig, rec: dict, node_id: str, tail: EventTail) -> None:
        super().__init__(rec, lambda name: launcher.restart(config, name))
        self.node_id = node_id
        self.tail = tail

    def events(self, kind: str | None = None) -> list[dict]:
        return self.tail.events(kind)


class RecordedEnsemble:
    """The running stack's ZooKeeper nodes: killed by their recorded PID, restarted by
    `harness.stack.launcher.restart`."""

    def __init__(self, config: StackConfig, stack: dict) -> None:
        self.config = config
        self.ensemble = launcher.zookeeper_ensemble(stack)
        self.nodes = [RecordedProcess(rec, self._restart) for rec in stack["services"]
                      if rec["name"].startswith("zookeeper-")]
        self.nodes.sort(key=lambda node: int(node.name.rsplit("-", 1)[1]))

    def _restart(self, name: str) -> dict:
        return launcher.restart(self.config, name)

    @property
    def hosts(self) -> str:
        return self.ensemble.hosts

    def mode(self, i: int) -> str | None:
        return self.ensemble.mode(i)

    def leader(self) -> int | None:
        return self.ensemble.leader()

    def kill_node(self, i: int) -> None:
        self.nodes[i].kill()

    def start_node(self, i: int) -> None:
        if not self.nodes[i].alive():
            self.nodes[i].start()

    def wait_ready(self, timeout: float) -> None:
        wait_until(lambda: all(self.mode(i) in ("leader", "follower") for i in range(len(self.nodes))), timeout,
                   f"ZooKeeper {self.hosts} to serve on every node", interval=0.1)


class RecordedWeb:
    """The running stack's web tier (gunicorn): stopped by its PID, restarted by `harness.stack.launcher.restart`."""

    def __init__(self, config: StackConfig, rec: dict) -> None:
        self.config = config
        self.process = RecordedProcess(rec, lambda name: launcher.restart(config, name))
        self.url = rec["url"]

    def stop(self) -> None:
        if self.process.alive():
            stop_pid(self.process.pid)

    def start(self) -> None:
        if not self.process.alive():
            self.process.start()
        wait_until(lambda: http_ok(f"{self.url}/healthz"), 120, "the web tier to answer /healthz", 0.2)
