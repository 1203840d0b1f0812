"""Tools for the edge tests: a stand-in web tier, edge processes, a black-hole proxy, a checker.

`Receiver` answers ``POST /api/v1/readings`` with the web tier's contract (201 stored, 200
duplicate by ``group:epoch:round``, 409 for an epoch older than the newest accepted, 400
for bad input) and records what it accepted; it can be slowed down or taken down. The real
web tier is used end to end in ``test_cluster_api.py``.
`EdgeProcess` runs ``python -m edge`` with an event log. `BlackHoleProxy` forwards a TCP
port until told to swallow traffic (a network partition without root). `check_invariants`
verifies RELIABILITY.md's I1–I6 over a receiver's log and the nodes' event logs.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from dataclasses import field
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path

from edge.events import read_events
from edge.fusion import fuse
from edge.schema import SchemaError
from edge.schema import validate_aggregate
from scripts.servers import free_port
from scripts.servers import wait_until

ROOT = Path(__file__).resolve().parents[1]


# --- a stand-in web tier ---------------------------------------------------------------------

@dataclass
class Stored:
    key: str
    doc: dict
    arrived: float


@dataclass
class Receiver:
    """A minimal web tier on 127.0.0.1 with the ingest contract; `delay_s` slows every answer."""

    port: int = field(default_factory=free_port)
    delay_s: float = 0.0
    stored: list[Stored] = field(default_factory=list)
    answers: list[tuple[str, int]] = field(default_factory=list)
    _newest: dict[str, int] = field(default_factory=dict)
    _keys: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def replica(self, **changes) -> Receiver:
        """Another replica (own port) over the same storage, like web replicas over one Redis."""
        return Receiver(stored=self.stored, answers=self.answers, _newest=self._newest, _keys=self._keys,
                        _lock=self._lock, **changes)

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                code, answer = receiver.ingest(self.path, body)
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def ingest(self, path: str, body: bytes) -> tuple[int, dict]:
        if path != "/api/v1/readings":
            return 404, {"error": "not found"}
        try:
            doc = json.loads(body)
            validate_aggregate(doc)
        except (ValueError, SchemaError) as exc:
            return 400, {"error": str(exc)}
        key = f"{doc['group']}:{doc['epoch']}:{doc['round']}"
        with self._lock:
            newest = self._newest.get(doc["group"], -1)
            if doc["epoch"] < newest:
                self.answers.append((key, 409))
                return 409, {"error": "stale epoch", "newest_epoch": newest}
            if key in self._keys:
                self.answers.append((key, 200))
                return 200, {"status": "duplicate"}
            self._keys.add(key)
            self._newest[doc["group"]] = doc["epoch"]
            self.stored.append(Stored(key, doc, time.time()))
            self.answers.append((key, 201))
            return 201, {"status": "stored", "timestamp": doc["timestamp"]}

    def rounds(self) -> list[int]:
        with self._lock:
            return [s.doc["round"] for s in self.stored]

    def count(self) -> int:
        with self._lock:
            return len(self.stored)

    def epochs(self) -> list[int]:
        with self._lock:
            return [s.doc["epoch"] for s in self.stored]


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


def leader_of(zk, group: str, root: str = "/aeroguard") -> tuple[str, int] | None:
    """``(node_id, epoch)`` of the group's current term from the epoch znode, or None."""
    try:
        data, _ = zk.get(f"{root}/groups/{group}/epoch")
        doc = json.loads(data)
        return doc["leader"], doc["epoch"]
    except Exception:  # best-effort probe for wait_until: missing or empty means "not yet"
        return None


def set_config(zk, doc: dict | str, root: str = "/aeroguard", group: str | None = None) -> None:
    path = f"{root}/groups/{group}/config" if group else f"{root}/config"
    data = (doc if isinstance(doc, str) else json.dumps(doc)).encode()
    if zk.exists(path):
        zk.set(path, data)
    else:
        zk.create(path, data, makepath=True)


def expire_session(hosts: str, client_id: tuple[int, bytes]) -> None:
    """Expire a session server-side: a second client with its id and password closes it."""
    from kazoo.client import KazooClient

    twin = KazooClient(hosts=hosts, client_id=client_id, timeout=2.0)
    twin.start(timeout=10)
    twin.stop()
    twin.close()


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
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def black_hole(self) -> None:
        self.blocked.set()

    def restore(self) -> None:
        self.blocked.clear()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.blocked.is_set():
                self._sockets.append(client)  # never answered: a connect into the void
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                client.close()
                continue
            self._sockets += [client, upstream]
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

    def table(self) -> dict[str, str]:
        return {i: ("FAIL: " + "; ".join(self.failures[i][:3]) if i in self.failures else "ok")
                for i in ("I1", "I2", "I3", "I4", "I5", "I6")}


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


def wait_rounds(receiver: Receiver, count: int, timeout: float) -> None:
    """Wait until `count` more aggregates are stored than now."""
    target = receiver.count() + count
    wait_until(lambda: receiver.count() >= target, timeout, f"{count} more stored aggregates")


# --- a group of edge processes -------------------------------------------------------------------

class EdgeGroup:
    """Three (or more) ``python -m edge`` processes of group ``g1`` delivering to `receiver`.

    `zk` is an admin client on the same chroot as `zk_hosts`; `period_s` and the other hot
    config keys are written to ``/aeroguard/config`` before the nodes start.
    """

    def __init__(self, directory: Path, zk, zk_hosts: str, urls: list[str], period_s: float = 0.5,
                 session_timeout: float = 2.0) -> None:
        self.directory = directory
        self.zk = zk
        self.zk_hosts = zk_hosts
        self.period_s = period_s
        self.session_timeout = session_timeout
        self.processes: dict[str, EdgeProcess] = {}
        set_config(zk, {"sampling_period_s": period_s, "api_urls": urls})

    def start(self, node_id: str, source: str = "const:20", zk_hosts: str | None = None) -> EdgeProcess:
        process = EdgeProcess(self.directory, "g1", node_id, zk_hosts or self.zk_hosts, source,
                              self.session_timeout)
        self.processes[node_id] = process.start()
        return process

    def leader(self, timeout: float = 15.0, above: int = -1) -> tuple[EdgeProcess, int]:
        """The leading process and its epoch, once an epoch above `above` is published."""
        def probe():
            found = leader_of(self.zk, "g1")
            return found if found and found[1] > above and found[0] in self.processes else None
        node_id, epoch = wait_until(probe, timeout, f"a leader with epoch above {above}")
        return self.processes[node_id], epoch

    def live(self) -> list[str]:
        return sorted(self.zk.get_children("/aeroguard/groups/g1/nodes"))

    def events(self, kind: str | None = None) -> list[dict]:
        return [e for e in all_events(self.processes.values()) if kind is None or e["kind"] == kind]

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop()
