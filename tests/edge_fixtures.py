"""Helpers of the edge tests: a stand-in web tier and a group of edge processes.

`Receiver` answers ``POST /api/v1/readings`` with the web tier's contract (201 stored, 200
duplicate by ``group:epoch:round``, 409 for an epoch older than the newest accepted, 400
for bad input) and records what it accepted; it can be slowed down or taken down (the
``receiver`` fixture in conftest.py starts one). The real web tier is used end to end in
``test_cluster_api.py``. `EdgeGroup` runs ``python -m edge`` nodes (`harness.faults.edge_process`)
delivering to it. The black-hole proxy and the invariant checker are in `harness.faults`.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from dataclasses import field
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path

from edge.schema import SchemaError
from edge.schema import validate_aggregate
from harness.faults.edge_process import EdgeProcess
from harness.faults.event_logs import Stored
from harness.faults.event_logs import all_events
from harness.faults.znodes import leader_of
from harness.faults.znodes import set_config
from harness.process import free_port
from harness.process import wait_until

ROOT = Path(__file__).resolve().parents[1]


# --- a stand-in web tier ---------------------------------------------------------------------

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


def expire_session(hosts: str, client_id: tuple[int, bytes]) -> None:
    """Expire a session server-side: a second client with its id and password closes it."""
    from kazoo.client import KazooClient

    twin = KazooClient(hosts=hosts, client_id=client_id, timeout=2.0)
    twin.start(timeout=10)
    twin.stop()
    twin.close()


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
