"""One worker process of the many-groups bench: many real edge nodes and a recording sink.

Each simulated node is a real `edge.node.EdgeNode` with its own `KazooClient` (built by the
edge's own `make_client`, so each node has its own ZooKeeper session, as a device would):
election, trigger, queue, fusion and delivery are the edge's code. The groups deliver to a
`Sink` in the same process, a loopback HTTP server that answers every aggregate 201 and
records when it arrived, instead of the web tier: the bench measures ZooKeeper and the round
protocol, not the storage. The parent (`harness.many_groups`) drives the worker over a pipe
with ``("add", groups)``, ``("snapshot",)`` and ``("stop",)``.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path

from kazoo.exceptions import KazooException
from kazoo.handlers.threading import KazooTimeoutError

from edge.__main__ import make_client
from edge.config import EdgeSettings
from edge.node import EdgeNode
from edge.sources import build_source

log = logging.getLogger(__name__)

NODES_PER_GROUP = 3
START_THREADS = 4  # per worker: more concurrent handshakes time out on a saturated machine
STOP_THREADS = 64
CONNECT_TIMEOUT_S = 30.0
THREAD_STACK_BYTES = 512 * 1024  # ~8 threads per node, thousands per process: 8 MiB stacks add up


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs: where ZooKeeper is, the root znode, the period and its folders."""

    index: int
    zk_hosts: str
    zk_root: str
    period_s: float
    session_timeout_s: float
    spool_dir: str
    log_path: str


class Sink:
    """A loopback HTTP server standing in for the web tier: 201 to every aggregate, recorded.

    It keeps, per aggregate, the time it arrived minus the aggregate's ``timestamp`` (the
    trigger's ``issued_at``): trigger → delivered, the round's latency as the leader sees it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: set[tuple[str, int, int]] = set()
        self.delivered: dict[str, int] = {}
        self.duplicates = 0
        self._latencies: list[float] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: one connection per leader, not per POST

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink.record(json.loads(body), time.time() * 1000)
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address) -> None:
                # A leader whose POST timed out hangs up before the answer: counted, not printed.
                with sink._lock:
                    sink.errors += 1

        self.errors = 0
        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="sink", daemon=True)

    def start(self) -> Sink:
        self._thread.start()
        return self

    def record(self, doc: dict, received_ms: float) -> None:
        key = (doc["group"], doc["epoch"], doc["round"])
        with self._lock:
            if key in self._seen:
                self.duplicates += 1
                return
            self._seen.add(key)
            self.delivered[doc["group"]] = self.delivered.get(doc["group"], 0) + 1
            self._latencies.append(received_ms - doc["timestamp"])

    def take(self) -> tuple[dict[str, int], list[float], int]:
        """Delivered rounds per group (cumulative), the latencies since the last call, duplicates + errors."""
        with self._lock:
            latencies, self._latencies = self._latencies, []
            return dict(self.delivered), latencies, self.duplicates + self.errors

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Worker:
    """The edge nodes of this process, three per group, and their sink."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.sink = Sink().start()
        self.nodes: list[EdgeNode] = []
        self.failed_starts = 0
        self._lock = threading.Lock()

    def add(self, groups: list[str]) -> dict:
        """Start three nodes for each group (in parallel); returns how many started and how long it took."""
        started = time.monotonic()
        ids = [(g, f"n{i}") for g in groups for i in range(1, NODES_PER_GROUP + 1)]
        with ThreadPoolExecutor(START_THREADS) as pool:
            list(pool.map(lambda gn: self._start_node(*gn), ids))
        return {"nodes": len(self.nodes), "failed": self.failed_starts, "seconds": time.monotonic() - started}

    def _start_node(self, group: str, node_id: str) -> None:
        spec = self.spec
        settings = EdgeSettings(group=group, node_id=node_id, zk_hosts=spec.zk_hosts, zk_root=spec.zk_root,
                                session_timeout_s=spec.session_timeout_s, source="sim:base=60,amplitude=2",
                                spool_dir=str(Path(spec.spool_dir) / f"{group}-{node_id}"),
                                defaults={"sampling_period_s": spec.period_s, "api_urls": [self.sink.url]})
        zk = make_client(settings)
        try:
            zk.start(timeout=CONNECT_TIMEOUT_S)
            node = EdgeNode(zk, settings, build_source(settings.source, node_id))
            node.start()
        except (KazooException, KazooTimeoutError):  # counted: the bench reports nodes that did not start
            log.exception("node %s/%s did not start", group, node_id)
            with self._lock:
                self.failed_starts += 1
            zk.stop()
            zk.close()
            return
        with self._lock:
            self.nodes.append(node)

    def snapshot(self) -> dict:
        """Cumulative counters of every node, the sink's records, and the groups led now."""
        totals: dict[str, int] = {}
        for node in list(self.nodes):
            for name, value in node.counts.snapshot().items():
                totals[name] = totals.get(name, 0) + value
        delivered, latencies, duplicates = self.sink.take()
        return {"counts": totals, "delivered": delivered, "latencies_ms": latencies, "duplicates": duplicates,
                "led": sum(node.epoch is not None for node in self.nodes),
                "sessions_lost": sum(node.state.lost_count for node in self.nodes),
                "crashed": sum(node.crashed.is_set() for node in self.nodes), "nodes": len(self.nodes),
                "time": time.time()}

    def stop(self) -> None:
        with ThreadPoolExecutor(STOP_THREADS) as pool:
            list(pool.map(lambda node: node.stop(), self.nodes))
        self.sink.stop()


def run(conn, spec: WorkerSpec) -> None:
    """The worker process's main loop: answer the parent's commands until ``stop``."""
    threading.stack_size(THREAD_STACK_BYTES)
    logging.basicConfig(level=logging.WARNING, filename=spec.log_path,
                        format=f"%(asctime)s %(levelname)s %(name)s [w{spec.index}] %(message)s")
    # Tracebacks of kazoo's own threads under overload go to the log too, not over the progress lines.
    log_file = open(spec.log_path, "a", buffering=1, encoding="utf-8")
    os.dup2(log_file.fileno(), 2)
    sys.stderr = log_file
    worker = Worker(spec)
    conn.send({"ready": True, "sink": worker.sink.url})
    while True:
        command, *args = conn.recv()
        if command == "add":
            conn.send(worker.add(*args))
        elif command == "snapshot":
            conn.send(worker.snapshot())
        elif command == "stop":
            worker.stop()
            conn.send({"stopped": True})
            return
