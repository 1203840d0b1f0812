"""Tools shared by the fault drill (`scripts.drill`) and the edge fault tests.

`EdgeProcess` runs one ``python -m edge`` with an event log; `RecordedProcess` drives one
process of a running ``make up`` stack (from its stack.json record; `RecordedEdge`,
`RecordedEnsemble` and `RecordedWeb` are its edge nodes, ZooKeeper and web tier, restarted through
`scripts.stack.restart`); `EventTail` reads a node's
event log incrementally and `DeliveryLog` rebuilds from those logs what the web tier stored;
`BlackHoleProxy` forwards a TCP port until told to swallow traffic (a network partition
without root); `check_invariants` verifies RELIABILITY.md's I1-I6 over what the web tier stored
and the nodes' event logs; `leader_of` and `set_config` read and write the znodes a drill needs.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Callable

from edge.events import read_events
from edge.fusion import fuse
from scripts import stack as stack_launcher
from scripts.servers import ROOT
from scripts.servers import ServerTimeout
from scripts.servers import free_port
from scripts.servers import pid_alive
from scripts.servers import process_start_time
from scripts.servers import stop_pid
from scripts.servers import wait_until


@dataclass
class Stored:
    """One aggregate the web tier stored: when its request arrived and when it was answered."""

    key: str
    doc: dict
    arrived: float
    answered: float | None = None




# --- edge processes ---------------------------------------------------------------------------

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




class RecordedProcess:
    """One process of a running stack, known by its stack.json record (it is not our child).

    `start` calls `restart` (``scripts.stack.restart``: the same command line) and adopts the
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


class EventTail:
    """The events a node wrote to its event log after `since` (epoch seconds), read incrementally.

    Reading starts at the end of the file as it is now (the last complete line), so a long-running
    stack's history is never parsed; a line still being written is read once it is complete.
    """

    def __init__(self, path: Path, since: float) -> None:
        self.path = Path(path)
        self.since = since
        self._events: list[dict] = []
        self._offset = 0
        if self.path.exists():
            with open(self.path, "rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - 65536))
                tail = handle.read()
            self._offset = size - len(tail) + tail.rfind(b"\n") + 1

    def events(self, kind: str | None = None) -> list[dict]:
        self._read()
        return [e for e in self._events if kind is None or e["kind"] == kind]

    def _read(self) -> None:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        self._offset += end
        for line in data[:end].splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line cut short by a kill -9
            if event.get("t", 0) >= self.since:
                self._events.append(event)


class DeliveryLog:
    """What the web tier stored, rebuilt from the edges' event logs (for a stack we did not start).

    An aggregate counts as stored when a node's POST of it was answered 201 (or 200 when the
    201's answer was lost and the retry found it stored): `Stored.arrived` is when that POST was
    sent, `answered` when its answer came back. Same interface as the drill's in-process `Recorder`.
    """

    def __init__(self, sources: list) -> None:
        self.sources = sources  # objects with events(): growing lists, read incrementally here
        self._seen = [0] * len(sources)
        self._docs: dict[tuple, dict] = {}
        self._answers: dict[tuple, dict] = {}
        self._lock = threading.Lock()

    @property
    def stored(self) -> list[Stored]:
        with self._lock:
            for i, source in enumerate(self.sources):
                events = source.events()
                for e in events[self._seen[i]:]:
                    if e["kind"] == "aggregate":
                        doc = e["doc"]
                        self._docs[(doc["group"], doc["epoch"], doc["round"])] = doc
                    elif e["kind"] == "delivery" and e.get("code") in (200, 201):
                        key = (e["group"], e["epoch"], e["round"])
                        known = self._answers.get(key)
                        if known is None or (known["code"] != 201 and e["code"] == 201):
                            self._answers[key] = e  # the 201 when there was one
                self._seen[i] = len(events)
            stored = [Stored(":".join(map(str, key)), self._docs[key], e["sent_at"], e["t"])
                      for key, e in self._answers.items() if key in self._docs]
        return sorted(stored, key=lambda s: s.arrived)

    def after(self, t: float) -> list[Stored]:
        """Aggregates answered after `t`, in the order they were sent."""
        return [s for s in self.stored if s.answered > t]


class RecordedEdge(RecordedProcess):
    """An edge node of the running stack: its record, node id and event log."""

    def __init__(self, config: stack_launcher.StackConfig, rec: dict, node_id: str, tail: EventTail) -> None:
        super().__init__(rec, lambda name: stack_launcher.restart(config, name))
        self.node_id = node_id
        self.tail = tail

    def events(self, kind: str | None = None) -> list[dict]:
        return self.tail.events(kind)


class RecordedEnsemble:
    """The running stack's ZooKeeper nodes: killed by their recorded PID, restarted by `scripts.stack.restart`."""

    def __init__(self, config: stack_launcher.StackConfig, stack: dict) -> None:
        self.config = config
        self.ensemble = stack_launcher.zookeeper_ensemble(stack)
        self.nodes = [RecordedProcess(rec, self._restart) for rec in stack["services"]
                      if rec["name"].startswith("zookeeper-")]
        self.nodes.sort(key=lambda node: int(node.name.rsplit("-", 1)[1]))

    def _restart(self, name: str) -> dict:
        return stack_launcher.restart(self.config, name)

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
    """The running stack's web tier (gunicorn): stopped by its PID, restarted by `scripts.stack.restart`."""

    def __init__(self, config: stack_launcher.StackConfig, rec: dict) -> None:
        self.config = config
        self.process = RecordedProcess(rec, lambda name: stack_launcher.restart(config, name))
        self.url = rec["url"]

    def stop(self) -> None:
        if self.process.alive():
            stop_pid(self.process.pid)

    def start(self) -> None:
        if not self.process.alive():
            self.process.start()
        wait_until(lambda: stack_launcher.http_ok(f"{self.url}/healthz"), 120, "the web tier to answer /healthz", 0.2)


# --- a black-hole TCP proxy --------------------------------------------------------------------

class BlackHoleProxy:
    """Forwards 127.0.0.1:`port` to `target_port`; `black_hole()` swallows traffic both ways.

    Sockets stay open while traffic is swallowed, like a partition (no RST, no FIN).
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.blocked = threading.Event()
        self._closed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def black_hole(self) -> None:
        self.blocked.set()

    def restore(self) -> None:
        self.blocked.clear()

    def close(self) -> None:
        self._closed.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()

    def _track(self, *sockets: socket.socket) -> bool:
        """Remember sockets for `close`; False (and closed) when the proxy is closing."""
        with self._lock:
            if not self._closed.is_set():
                self._sockets.extend(sockets)
                return True
        for sock in sockets:
            sock.close()
        return False

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.blocked.is_set():
                self._track(client)  # never answered: a connect into the void
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                client.close()
                continue
            if self._track(client, upstream):
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(None)
        while not self._closed.is_set():
            try:
                data = src.recv(65536)
            except OSError:
                break
            if not data:
                break
            if self.blocked.is_set():
                continue  # swallowed
            try:
                dst.sendall(data)
            except OSError:
                break
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# --- the invariant checker ---------------------------------------------------------------------

@dataclass
class Verdict:
    failures: dict[str, list[str]] = field(default_factory=dict)

    def fail(self, invariant: str, message: str) -> None:
        self.failures.setdefault(invariant, []).append(message)

    @property
    def ok(self) -> bool:
        return not self.failures


def check_invariants(stored: list[Stored], events: list[dict], max_gap_s: float | None = None,
                     fusion: tuple[float, float] = (3.5, 0.5)) -> Verdict:
    """Check I1–I6 over the receiver's accepted aggregates and the nodes' event logs.

    I1 one epoch per round; I2 accepted epochs never decrease; I3 each value is the fusion of
    its round's readings (and those readings were measured for that round); I4 timestamps
    strictly increasing in acceptance order; I5 no reading counted in another round;
    I6 no gap between consecutive accepted aggregates longer than `max_gap_s`.
    """
    verdict = Verdict()
    epochs_of_round: dict[int, set[int]] = {}
    sent = {(e["node"], e["epoch"], e["round"]): e["value"] for e in events if e["kind"] == "reading"}
    last_epoch, last_ts, last_arrival = -1, -1, None
    for item in stored:
        doc = item.doc
        epochs_of_round.setdefault(doc["round"], set()).add(doc["epoch"])
        if doc["epoch"] < last_epoch:
            verdict.fail("I2", f"epoch {doc['epoch']} accepted after {last_epoch}")
        last_epoch = max(last_epoch, doc["epoch"])
        if doc["timestamp"] <= last_ts:
            verdict.fail("I4", f"timestamp {doc['timestamp']} after {last_ts}")
        last_ts = doc["timestamp"]
        values = {r["node_id"]: r["value"] for r in doc["readings"] + doc["excluded"]}
        expected = fuse(values, *fusion).value if values else None
        if expected is None or abs(expected - doc["value"]) > 1e-9:
            verdict.fail("I3", f"round {doc['round']}: value {doc['value']} != fusion {expected}")
        for node, value in values.items():
            if sent.get((node, doc["epoch"], doc["round"])) != value:
                verdict.fail("I5", f"round {doc['round']}: {node}'s {value} was not measured for it")
        if max_gap_s is not None and last_arrival is not None and item.arrived - last_arrival > max_gap_s:
            verdict.fail("I6", f"{item.arrived - last_arrival:.2f} s before round {doc['round']}")
        last_arrival = item.arrived
    for round_, epochs in epochs_of_round.items():
        if len(epochs) > 1:
            verdict.fail("I1", f"round {round_} accepted from epochs {sorted(epochs)}")
    return verdict




def all_events(processes) -> list[dict]:
    return [e for p in processes for e in p.events()]


def leader_of(zk, group: str, root: str = "/aeroguard") -> tuple[str, int] | None:
    """``(node_id, epoch)`` of the group's current term from its epoch znode, or None."""
    from kazoo.exceptions import KazooException

    try:
        data, _ = zk.get(f"{root}/groups/{group}/epoch")
        doc = json.loads(data)
        return doc["leader"], doc["epoch"]
    except (KazooException, ValueError, KeyError, TypeError):
        return None


def set_config(zk, doc: dict | str, root: str = "/aeroguard", group: str | None = None) -> None:
    """Write the cluster (or a group's) config znode; `doc` may be raw text (to test bad JSON)."""
    path = f"{root}/groups/{group}/config" if group else f"{root}/config"
    data = (doc if isinstance(doc, str) else json.dumps(doc)).encode()
    if zk.exists(path):
        zk.set(path, data)
    else:
        zk.create(path, data, makepath=True)
