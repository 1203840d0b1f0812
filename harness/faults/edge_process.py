"""`EdgeProcess`: one ``python -m edge`` node started by a test or the drill, with an event log."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from edge.events import read_events
from harness.process import ROOT


class EdgeProcess:
    """``python -m edge`` for one node, logging to ``<dir>/<node>.log`` and ``<node>.events``."""

    def __init__(self, directory: Path, group: str, node_id: str, zk_hosts: str, source: str = "const:20",
                 session_timeout: float = 2.0, extra: tuple[str, ...] = (), env: dict | None = None) -> None:
        self.node_id = node_id
        self.log_path = directory / f"{node_id}.log"
        self.event_path = directory / f"{node_id}.events"
        self.argv = [sys.executable, "-m", "edge", "--group", group, "--node-id", node_id, "--zk", zk_hosts,
                     "--source", source, "--session-timeout", str(session_timeout),
                     "--spool-dir", str(directory / f"spool-{node_id}"), "--event-log", str(self.event_path),
                     *extra]
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.popen: subprocess.Popen | None = None

    def start(self) -> EdgeProcess:
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL)
        return self

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.popen.pid, sig)

    def kill(self) -> None:
        if self.alive():
            self.popen.kill()
            self.popen.wait(5)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.popen is None:
            return None
        if self.alive():
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode

    def events(self, kind: str | None = None) -> list[dict]:
        if not self.event_path.exists():
            return []
        return [e for e in read_events(str(self.event_path)) if kind is None or e["kind"] == kind]

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
