"""Fault drill for the edge cluster: ``python -m scripts.drill [--faults ...] [--json PATH]``.

Runs against the stack ``make up`` started (``.run/stack.json``, or ``AEROGUARD_RUN_DIR``):
its 3-node ZooKeeper ensemble, web tier and edge group; when none runs it starts one the way
``make up`` does and leaves it running. It injects each fault of RELIABILITY.md's matrix that
concerns the edge (rows 1-6 and 9, plus a planned SIGTERM), one after the other, restarts what
a fault killed with the same command line (`scripts.stack.restart`, which keeps stack.json
current, so ``make down`` stops exactly what runs), restores the cluster config it changed,
and prints a table: fault, recovery time, rounds missed, readings lost, readings duplicated,
invariants I1-I6 (I7 for reconfiguration), and the latency from a reading's measurement to its
stored verdict. ``--json PATH`` also writes it. What the web tier stored is read from the
edges' event logs (each POST answered 201) and checked against the web tier's own series.
``--own-stack`` instead brings up a private stack through `scripts.servers` (the real web tier
runs in this process behind a recorder) with three nodes of group ``drill``, and removes it.

Recovery is the time from the fault (or, for an outage, from its repair) to the next
aggregate the web tier stores. Budgets (issue 4): leader kill -9 <= T + tickTime + period;
SIGTERM <= one period; measured -> stored p99 <= 100 ms at a 1 s period. The process, log,
proxy and invariant tools live in `scripts.faultkit`, shared with the fault tests.
"""
from __future__ import annotations

import argparse
import bisect
import io
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

from kazoo.exceptions import NoNodeError

from scripts import stack as launcher
from scripts.faultkit import DeliveryLog
from scripts.faultkit import EdgeProcess
from scripts.faultkit import EventTail
from scripts.faultkit import RecordedEdge
from scripts.faultkit import RecordedEnsemble
from scripts.faultkit import RecordedWeb
from scripts.faultkit import Stored
from scripts.faultkit import all_events
from scripts.faultkit import check_invariants
from scripts.faultkit import leader_of
from scripts.faultkit import set_config
from scripts.servers import ROOT
from scripts.servers import ServerError
from scripts.servers import free_port
from scripts.servers import wait_until

GROUP = "drill"
TICK_S = launcher.ZK_TICK_MS / 1000


class Recorder:
    """WSGI middleware: records every aggregate the web tier stored (201) and when it answered."""

    def __init__(self, app) -> None:
        self.app = app
        self.stored: list[Stored] = []
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != "/api/v1/readings" or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        status: list[str] = []

        def record_status(code, headers, exc_info=None):
            status.append(code)
            return start_response(code, headers, exc_info)

        arrived = time.time()
        result = self.app(environ, record_status)
        data = b"".join(result)
        if hasattr(result, "close"):
            result.close()
        if status and status[0].startswith("201"):
            doc = json.loads(body)
            with self._lock:  # in arrival order: the order the web tier stored them in
                bisect.insort(self.stored, Stored(f"{doc['group']}:{doc['epoch']}:{doc['round']}", doc, arrived,
                                                  time.time()), key=lambda s: s.arrived)
        return [data]

    def after(self, t: float) -> list[Stored]:
        """Aggregates answered after `t`, in the order they were stored."""
        with self._lock:
            return [s for s in self.stored if s.answered > t]


class WebTier:
    """The real web tier (`create_app`) behind a `Recorder`, served by werkzeug; can go down and up."""

    def __init__(self, settings) -> None:
        from webapp import create_app

        self.app = create_app(settings)
        self.recorder = Recorder(self.app)
        self.port = free_port()
        self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        from werkzeug.serving import make_server

        self._server = make_server("127.0.0.1", self.port, self.recorder, threaded=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@dataclass
class Row:
    fault: str
    started: float
    recovery_s: float | None = None
    budget_s: float | None = None
    ended: float = 0.0
    notes: str = ""
    extra_ok: bool = True
    result: dict = field(default_factory=dict)


class OwnStack:
    """A private stack through `scripts.servers` and three `EdgeProcess`es of group ``drill``.

    The web tier runs in this process behind a `Recorder`; everything is removed by `down`.
    """

    def __init__(self, directory: Path, period: float, session_timeout: float) -> None:
        from scripts.servers import RedisServer
        from scripts.servers import ZooKeeperEnsemble
        from scripts.servers import free_ports

        self.dir = directory
        self.group, self.root = GROUP, "/aeroguard"
        self.period, self.T = period, session_timeout
        self.ensemble = ZooKeeperEnsemble(directory / "zk", free_ports(3), tick_ms=int(TICK_S * 1000))
        self.redis = RedisServer(directory / "redis", free_port())
        self.edges: dict[str, EdgeProcess] = {}
        self.web: WebTier | None = None

    @property
    def hosts(self) -> str:
        return self.ensemble.hosts

    @property
    def api_urls(self) -> list[str]:
        return [self.web.url]

    @property
    def recorder(self) -> Recorder:
        return self.web.recorder

    def up(self, zk) -> None:
        from webapp.config import Settings

        self.redis.start()
        self.redis.wait_ready(30)
        self.web = WebTier(Settings(redis_url=self.redis.url, zk_hosts=self.hosts, key_prefix="drill:",
                                    hostname="drill-web", env="local"))
        self.web.start()
        set_config(zk, {"sampling_period_s": self.period, "api_urls": self.api_urls})
        for i in (1, 2, 3):
            self.edges[f"edge-{i}"] = EdgeProcess(self.dir, GROUP, f"edge-{i}", self.hosts,
                                                  "sim:base=60,amplitude=1,noise=0.05", self.T).start()

    def prepare(self) -> None:
        self.ensemble.start()
        self.ensemble.wait_ready(60)

    def check_store(self, stored: list[Stored]) -> tuple[bool, str]:
        return True, ""  # the recorder wraps the web tier itself

    def heal(self) -> None:
        """Nothing to do: `down` removes the whole private stack."""

    def down(self) -> None:
        for edge in self.edges.values():
            edge.stop()
        if self.web is not None:
            self.web.stop()
            if self.web.app.extensions.get("zk"):
                self.web.app.extensions["zk"].stop()
        self.redis.stop()
        self.ensemble.stop()


class AttachedStack:
    """The stack ``make up`` started, from its stack.json; started the same way when none runs.

    Edge nodes are the ``edge-N`` records (their group, node id, session timeout and event log
    are read from their command lines), ZooKeeper the ``zookeeper-N`` records, the web tier
    ``web``. `heal` restarts any of them that is not running, so the drill leaves the stack whole.
    """

    def __init__(self, config: launcher.StackConfig, since: float) -> None:
        self.config = config
        self.started_stack = self._ensure_running()
        stack = launcher.load_stack(config)
        names = {rec["name"]: rec for rec in stack["services"]}
        missing = [n for n in ("zookeeper-1", "zookeeper-2", "zookeeper-3", "web", "edge-1") if n not in names]
        if missing:
            raise ServerError(f"the stack in {config.state_dir} lacks {missing}: run the whole stack (`make up`)")
        self.edges: dict[str, RecordedEdge] = {}
        settings = None
        for rec in stack["services"]:
            if rec["name"].startswith("edge-"):
                settings = self._edge_settings(rec, stack)
                tail = EventTail(Path(settings.event_log), since)
                self.edges[settings.node_id] = RecordedEdge(config, rec, settings.node_id, tail)
        self.group, self.root, self.T = settings.group, settings.zk_root, settings.session_timeout_s
        self.period = self.default_period = settings.defaults["sampling_period_s"]
        self.api_urls = list(settings.defaults.get("api_urls") or [names["web"]["url"]])
        self.ensemble = RecordedEnsemble(config, stack)
        self.web = RecordedWeb(config, names["web"])
        self.recorder = DeliveryLog([edge.tail for edge in self.edges.values()])

    def _ensure_running(self) -> bool:
        """Start the stack as ``make up`` does when none runs; True when this call started it."""
        stack = launcher.load_stack(self.config)
        if stack is not None and any(launcher.record_alive(rec) for rec in stack["services"]):
            return False
        print(f"drill: no stack runs in {self.config.state_dir}; starting one as `make up` does", file=sys.stderr)
        self.config.stack_file.unlink(missing_ok=True)
        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        services, exports = launcher.start_services(self.config)
        launcher.write_stack(self.config, services, exports)
        return True

    @staticmethod
    def _edge_settings(rec: dict, stack: dict):
        """The node's settings parsed from its recorded command line, as the node parsed them."""
        from edge.config import EdgeSettings

        if rec.get("argv", [])[1:3] != ["-m", "edge"]:
            raise ServerError(f"{rec['name']} has no recorded command line: `make down`, then `make up`")
        settings = EdgeSettings.from_args(rec["argv"][3:], {**launcher.base_env(), **stack["env"]})
        if not settings.event_log:
            raise ServerError(f"{rec['name']} runs without --event-log: the drill cannot check it")
        return settings

    @property
    def hosts(self) -> str:
        return self.ensemble.hosts

    def up(self, zk) -> None:
        """Read the period in force (the cluster config's, else the nodes' default)."""
        try:
            doc = json.loads(zk.get(f"{self.root}/config")[0] or b"{}")
        except (NoNodeError, ValueError):
            doc = {}
        self.period = float(doc.get("sampling_period_s", self.default_period))

    def prepare(self) -> None:
        self.heal()

    def check_store(self, stored: list[Stored]) -> tuple[bool, str]:
        """Compare the aggregates the edges saw stored with the web tier's series over their span."""
        if not stored:
            return True, ""
        stamps = sorted(s.doc["timestamp"] for s in stored)
        query = urllib.parse.urlencode({"sensor": self.group, "from": stamps[0], "to": stamps[-1],
                                        "count": 10_000})
        with urllib.request.urlopen(f"{self.web.url}/listar?{query}", timeout=10) as response:
            series = [r["timestamp"] for r in json.load(response)["readings"]]
        extra, absent = sorted(set(series) - set(stamps)), sorted(set(stamps) - set(series))
        ok = not extra and not absent and len(series) == len(stamps)
        return ok, ("" if ok else f"web tier series differs: {len(absent)} not stored, {len(extra)} unexpected, "
                    f"{len(series)} samples for {len(stamps)} aggregates")

    def heal(self) -> None:
        """Resume paused nodes, restart what is not running (ZooKeeper, web, edges), wait until ready."""
        for edge in self.edges.values():
            edge.signal(signal.SIGCONT)
        for i, node in enumerate(self.ensemble.nodes):
            if not node.alive():
                print(f"drill: restarting {node.name}", file=sys.stderr)
                self.ensemble.start_node(i)
        self.ensemble.wait_ready(60)
        if not self.web.process.alive():
            print("drill: restarting web", file=sys.stderr)
        self.web.start()
        for edge in self.edges.values():
            if not edge.alive():
                print(f"drill: restarting {edge.name}", file=sys.stderr)
                edge.start()

    def down(self) -> None:
        """The stack stays up (``make down`` stops it)."""


class Drill:
    """A stack (`OwnStack` or `AttachedStack`) under fault; each ``fault_*`` method injects one."""

    def __init__(self, stack: OwnStack | AttachedStack, warmup_rounds: int = 12, quiet_rounds: int = 20) -> None:
        self.stack = stack
        self.warmup_rounds = warmup_rounds
        self.quiet_rounds = quiet_rounds
        self.rows: list[Row] = []
        self.quiet: list[tuple[float, float]] = []
        self.zk = None
        self._saved_config: tuple[bool, bytes] | None = None

    @property
    def period(self) -> float:
        return self.stack.period

    @property
    def T(self) -> float:
        return self.stack.T

    # stack ------------------------------------------------------------------------------------
    def up(self) -> None:
        from kazoo.client import KazooClient
        from kazoo.retry import KazooRetry

        self.stack.prepare()
        self.zk = KazooClient(self.stack.hosts, timeout=4.0, connection_retry=KazooRetry(max_tries=-1, max_delay=1.0))
        self.zk.start(timeout=30)
        self.stack.up(self.zk)
        self.leader()
        # Warm up past the web tier's first full window (its learned detectors load then), then
        # measure latency over a quiet stretch.
        self.settle(self.warmup_rounds)
        self.steady(self.quiet_rounds)

    def down(self) -> None:
        """Put the config back, make the stack whole again (attached) or remove it (own)."""
        try:
            if self._saved_config is not None and self.zk is not None:
                self._restore_config()
            self.stack.heal()
        finally:
            if self.zk is not None:
                self.zk.stop()
                self.zk.close()
            self.stack.down()

    @property
    def _config_path(self) -> str:
        return f"{self.stack.root}/config"

    def _save_config(self) -> None:
        if self._saved_config is None:
            found = self.zk.exists(self._config_path)
            self._saved_config = (True, self.zk.get(self._config_path)[0]) if found else (False, b"")

    def _restore_config(self) -> None:
        """The cluster config as it was before the drill changed it (absent again if it was)."""
        existed, data = self._saved_config
        if existed:
            set_config(self.zk, data.decode(), root=self.stack.root)
        elif self.zk.exists(self._config_path):
            self.zk.delete(self._config_path)
        self._saved_config = None

    def steady(self, rounds: int) -> None:
        """Let `rounds` rounds pass without a fault; latency is measured over these stretches."""
        start = time.time()
        self.settle(rounds)
        self.quiet.append((start, time.time()))

    def leader(self, above: int = -1, timeout: float = 30.0):
        def probe():
            found = leader_of(self.zk, self.stack.group, self.stack.root)
            return found if found and found[1] > above and found[0] in self.stack.edges else None
        node_id, epoch = wait_until(probe, timeout, f"a leader above epoch {above}")
        return self.stack.edges[node_id], epoch

    def settle(self, rounds: int, timeout: float = 60.0) -> None:
        now = time.time()
        wait_until(lambda: len(self.stack.recorder.after(now)) >= rounds, timeout, f"{rounds} stored rounds",
                   interval=0.1)

    def next_stored(self, after: float, epoch: int | None = None, timeout: float = 60.0) -> float:
        return wait_until(lambda: next((s.answered for s in self.stack.recorder.after(after)
                                        if epoch is None or s.doc["epoch"] == epoch), None), timeout,
                          "the next stored aggregate")

    def restart(self, edge) -> None:
        """Start `edge` again and wait until its new process (not the old session) is registered."""
        edge.stop()
        edge.start()
        path = f"{self.stack.root}/groups/{self.stack.group}/nodes/{edge.node_id}"

        def registered() -> bool:
            try:
                return json.loads(self.zk.get(path)[0]).get("pid") == edge.pid
            except (NoNodeError, ValueError):
                return False

        wait_until(registered, 30, f"{edge.node_id} registered again")

    def events(self) -> list[dict]:
        return all_events(self.stack.edges.values())

    # faults -----------------------------------------------------------------------------------
    def fault_leader_kill9(self) -> Row:
        edge, epoch = self.leader()
        row = Row("leader kill -9", time.time(), budget_s=self.T + TICK_S + self.period)
        edge.kill()
        _, new_epoch = self.leader(above=epoch)
        row.recovery_s = self.next_stored(row.started, new_epoch) - row.started
        self.restart(edge)
        return row

    def fault_leader_sigterm(self) -> Row:
        edge, epoch = self.leader()
        row = Row("leader SIGTERM", time.time(), budget_s=self.period)
        edge.stop()
        _, new_epoch = self.leader(above=epoch)
        row.recovery_s = self.next_stored(row.started, new_epoch) - row.started
        self.restart(edge)
        return row

    def fault_leader_paused(self) -> Row:
        edge, epoch = self.leader()
        row = Row("leader SIGSTOP 2T, SIGCONT", time.time(), budget_s=self.T + TICK_S + self.period)
        edge.signal(signal.SIGSTOP)
        _, new_epoch = self.leader(above=epoch)
        row.recovery_s = self.next_stored(row.started, new_epoch) - row.started
        wait_until(lambda: time.time() > row.started + 2 * self.T, 3 * self.T, "the pause")
        resumed = time.time()
        edge.signal(signal.SIGCONT)
        wait_until(lambda: any(e["kind"] == "registered" and e["t"] > resumed for e in edge.events()), 30,
                   "the paused leader rejoined")
        zombie = [e for e in edge.events() if e["t"] > resumed and e["kind"] == "trigger"
                  and e["epoch"] == epoch]
        row.extra_ok = not zombie
        row.notes = f"old epoch triggers after resume: {len(zombie)}"
        return row

    def _zk_node_down(self, index: int, name: str) -> Row:
        _, epoch = self.leader()
        row = Row(name, time.time(), budget_s=1.0)  # pause beyond one period
        self.stack.ensemble.kill_node(index)
        self.settle(5)
        row.recovery_s = max(self._longest_gap(row.started) - self.period, 0.0)
        self.stack.ensemble.start_node(index)
        self.stack.ensemble.wait_ready(60)
        lost = [e for e in self.events() if e["t"] > row.started and e.get("state") == "LOST"]
        same = self.leader()[1] == epoch
        row.extra_ok = same and not lost
        row.notes = f"pause beyond one period; same leader: {same}, sessions lost {len(lost)}"
        return row

    def fault_zk_follower_down(self) -> Row:
        leader = self.stack.ensemble.leader()
        return self._zk_node_down(next(i for i in range(3) if i != leader), "ZooKeeper follower kill -9")

    def fault_zk_leader_down(self) -> Row:
        return self._zk_node_down(self.stack.ensemble.leader(), "ZooKeeper leader kill -9")

    def fault_quorum_lost(self) -> Row:
        _, epoch = self.leader()
        leader = self.stack.ensemble.leader()
        down = [leader, next(i for i in range(3) if i != leader)]
        row = Row("ZooKeeper quorum lost 3T", time.time(), budget_s=self.T + 2.0)
        for index in down:
            self.stack.ensemble.kill_node(index)
        wait_until(lambda: time.time() > row.started + 3 * self.T, 4 * self.T, "three session timeouts")
        restarting = time.time()
        for index in down:
            self.stack.ensemble.start_node(index)
        # Recovery counts from the moment a quorum serves again (not from the JVMs' start).
        wait_until(lambda: sum(self.stack.ensemble.mode(i) in ("leader", "follower") for i in range(3)) >= 2, 60,
                   "a ZooKeeper quorum again")
        repaired = time.time()
        row.recovery_s = self.next_stored(repaired) - repaired
        during = [e for e in self.events() if e["kind"] in ("trigger", "delivery")
                  and row.started + self.T < e.get("sent_at", e["t"]) < restarting]
        row.extra_ok = self.leader()[1] == epoch and not during
        row.notes = f"same leader: {self.leader()[1] == epoch}; triggers/POSTs while cut off: {len(during)}"
        self.stack.ensemble.wait_ready(60)
        return row

    def fault_follower_kill9(self) -> Row:
        leader, _ = self.leader()
        edge = next(e for e in self.stack.edges.values() if e is not leader)
        row = Row("follower kill -9", time.time(),
                  budget_s=1.8 * self.period + 0.5)  # period + round timeout + delivery
        edge.kill()
        row.recovery_s = self.next_stored(row.started) - row.started
        nodes = f"{self.stack.root}/groups/{self.stack.group}/nodes"
        gone = wait_until(lambda: edge.node_id not in self.zk.get_children(nodes), 30, "the dead follower left discovery")
        row.notes = f"left discovery after {time.time() - row.started:.1f} s" if gone else ""
        self.restart(edge)
        return row

    def fault_web_down(self, outage_s: float = 10.0) -> Row:
        row = Row(f"web tier down {outage_s:.0f} s", time.time(), budget_s=2.0 + self.period)
        self.stack.web.stop()
        wait_until(lambda: time.time() > row.started + outage_s, outage_s + 1, "the outage")
        repaired = time.time()
        self.stack.web.start()
        row.recovery_s = self.next_stored(repaired) - repaired
        triggered = {e["round"] for e in self.events() if e["kind"] == "trigger" and e["t"] > row.started}
        wait_until(lambda: triggered <= {s.doc["round"] for s in self.stack.recorder.after(row.started)}, 60,
                   "the spool replayed")
        row.notes = f"replayed {len(triggered)} rounds in {time.time() - repaired:.1f} s"
        return row

    def fault_reconfig(self) -> Row:
        """Invalid values, then 200 quick sets; the config in force before is restored afterwards."""
        pids = {n: e.pid for n, e in self.stack.edges.items()}
        row = Row("hot reconfig: bad values, 200 sets", time.time(), budget_s=1.0)
        self._save_config()
        try:
            rejected = [self._rejected_by_all(bad)
                        for bad in ('{"sampling_period_s": 1', '{"sampling_period_s": 0}', '{"colour": 1}')]
            burst = time.time()
            final = round(self.period * 0.8, 3)
            for i in range(200):
                set_config(self.zk, {"sampling_period_s": final if i == 199 else round(self.period + i / 1000, 3),
                                     "api_urls": self.stack.api_urls}, root=self.stack.root)
            last_set = time.time()

            def applied():
                times = [next((e["t"] for e in edge.events("config") if e["t"] > burst
                               and e["config"]["sampling_period_s"] == final), None)
                         for edge in self.stack.edges.values()]
                return max(times) if all(times) else None

            # A node may apply the last value before the writer's set() returns: never below 0.
            row.recovery_s = max(0.0, wait_until(applied, 10, "every node applied the last value") - last_set)
        finally:
            self._restore_config()
        edges = self.stack.edges.values()
        same = {n: e.pid for n, e in self.stack.edges.items()} == pids and all(e.alive() for e in edges)
        row.extra_ok = same and all(rejected)
        row.notes = (f"I7 (no restart): {'ok' if same else 'FAIL'}; 3 invalid values rejected by every node; "
                     f"200 sets written in {last_set - burst:.2f} s, the last applied everywhere "
                     f"{row.recovery_s:.2f} s after it; config restored")
        return row

    def _rejected_by_all(self, bad: str) -> bool:
        at = time.time()
        set_config(self.zk, bad, root=self.stack.root)
        return wait_until(lambda: all(any(e["t"] > at for e in edge.events("config_rejected"))
                                      for edge in self.stack.edges.values()), 5, f"{bad} rejected")

    # report -----------------------------------------------------------------------------------
    def _longest_gap(self, after: float) -> float:
        arrivals = [after] + [s.answered for s in self.stack.recorder.after(after)]
        return max(b - a for a, b in zip(arrivals, arrivals[1:]))

    def finish(self, row: Row) -> Row:
        self.settle(3)
        row.ended = time.time()
        stored = [s for s in self.stack.recorder.stored if row.started - 2 * self.period < s.answered <= row.ended]
        events = self.events()
        rounds = sorted({s.doc["round"] for s in stored})
        missed = sorted(set(range(rounds[0], rounds[-1] + 1)) - set(rounds)) if rounds else []
        stored_keys = {(s.doc["epoch"], s.doc["round"]) for s in stored}
        window = [e for e in events if e["kind"] == "reading" and row.started <= e["t"] <= row.ended - self.period]
        lost = [e for e in window if (e["epoch"], e["round"]) not in stored_keys]
        counted = [(r["node_id"], s.doc["round"]) for s in stored for r in s.doc["readings"] + s.doc["excluded"]]
        verdict = check_invariants(stored, events)
        store_ok, store_note = self.stack.check_store(stored)
        if not store_ok:
            row.extra_ok = False
            row.notes = "; ".join(n for n in (row.notes, store_note) if n)
        row.result = {"fault": row.fault, "recovery_s": None if row.recovery_s is None else round(row.recovery_s, 2),
                      "budget_s": row.budget_s, "rounds_missed": len(missed), "readings_lost": len(lost),
                      "readings_duplicated": len(counted) - len(set(counted)),
                      "invariants": "ok" if verdict.ok and row.extra_ok else
                      "FAIL " + json.dumps(verdict.failures)[:200] + ("" if row.extra_ok else " (extra check)"),
                      "notes": row.notes}
        self.rows.append(row)
        return row

    def latency(self) -> dict:
        """Measured -> stored over quiet stretches, and its edge part (measured -> POST sent)."""
        sent = {(e["epoch"], e["round"]): e["sent_at"] for e in self.events() if e["kind"] == "delivery"}
        total, edge, worst = [], [], []
        for s in self.stack.recorder.stored:
            if not any(a <= s.doc["timestamp"] / 1000 and s.answered <= b for a, b in self.quiet):
                continue  # triggered and stored inside a quiet stretch (not a replay after a fault)
            for r in s.doc["readings"]:
                total.append(s.answered * 1000 - r["measured_at"])
                worst.append((round(total[-1], 1), s.doc["round"], r["node_id"], round(s.answered, 3)))
                if (s.doc["epoch"], s.doc["round"]) in sent:
                    edge.append(sent[(s.doc["epoch"], s.doc["round"])] * 1000 - r["measured_at"])
        if not total:
            return {}
        return {"readings": len(total), "p50_ms": _pct(total, 0.5), "p99_ms": _pct(total, 0.99),
                "edge_p50_ms": _pct(edge, 0.5), "edge_p99_ms": _pct(edge, 0.99),
                "worst": sorted(worst, reverse=True)[:5]}  # (ms, round, node, answered at)


def _pct(samples: list[float], q: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


FAULTS = ("leader_kill9", "leader_sigterm", "leader_paused", "zk_follower_down", "zk_leader_down",
          "quorum_lost", "follower_kill9", "web_down", "reconfig")


def print_table(rows: list[dict], latency: dict, out=sys.stdout) -> None:
    head = ("fault", "recovery_s", "budget_s", "rounds_missed", "readings_lost", "readings_duplicated",
            "invariants")
    print("| " + " | ".join(head) + " |", file=out)
    print("|" + "---|" * len(head), file=out)
    for row in rows:
        print("| " + " | ".join(str(row[h]) for h in head) + " |", file=out)
    for row in rows:
        if row["notes"]:
            print(f"- {row['fault']}: {row['notes']}", file=out)
    if latency:
        print(f"- measured -> stored latency over {latency['readings']} readings: p50 {latency['p50_ms']} ms, "
              f"p99 {latency['p99_ms']} ms (budget 100 ms); of which measured -> POST sent (the edge): "
              f"p50 {latency['edge_p50_ms']} ms, p99 {latency['edge_p99_ms']} ms", file=out)


def build_stack(args: argparse.Namespace, since: float) -> OwnStack | AttachedStack:
    """The stack ``make up`` started (started now if none runs), or with ``--own-stack`` a private one."""
    if args.own_stack:
        directory = Path(tempfile.mkdtemp(prefix="drill-", dir=ROOT / ".run" if (ROOT / ".run").is_dir() else None))
        print(f"drill: private stack, state and logs in {directory}", file=sys.stderr)
        return OwnStack(directory, args.period or 1.0, args.session_timeout or 2.0)
    config = launcher.StackConfig.from_env(os.environ, args.state_dir)
    stack = AttachedStack(config, since)
    print(f"drill: stack of {config.stack_file}, group {stack.group}, T = {stack.T:g} s; "
          f"event logs {', '.join(str(e.tail.path) for e in stack.edges.values())}", file=sys.stderr)
    return stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.drill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--own-stack", action="store_true",
                        help="bring up a private stack (and remove it) instead of using the `make up` one")
    parser.add_argument("--state-dir", type=Path, help="the `make up` stack's folder (default .run or AEROGUARD_RUN_DIR)")
    parser.add_argument("--period", type=float, help="sampling period (s); --own-stack only (default 1)")
    parser.add_argument("--session-timeout", type=float,
                        help="edge ZooKeeper session timeout T (s); --own-stack only (default 2)")
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated subset of {','.join(FAULTS)}")
    parser.add_argument("--warmup", type=int, default=12,
                        help="rounds before the first measurement (past the web tier's first full window)")
    parser.add_argument("--quiet-rounds", type=int, default=20, help="fault-free rounds for the latency figures")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("kazoo.client").setLevel(logging.ERROR)  # the drill's own client, cut off on purpose
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = set(faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown fault(s): {sorted(unknown)}")
    if not args.own_stack and (args.period or args.session_timeout):
        parser.error("--period and --session-timeout set up a private stack (--own-stack); a `make up` stack "
                     "has its own (EDGE_PERIOD_S, EDGE_SESSION_TIMEOUT_S)")
    # SIGTERM unwinds like Ctrl-C, so the config is restored and killed processes restarted.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        stack = build_stack(args, time.time())
    except ServerError as exc:
        print(f"drill: {exc}", file=sys.stderr)
        return 1
    drill = Drill(stack, args.warmup, args.quiet_rounds)
    try:
        drill.up()
        for name in faults:
            print(f"drill: {name} ...", file=sys.stderr)
            drill.finish(getattr(drill, f"fault_{name}")())
            drill.steady(3)
        rows = [row.result for row in drill.rows]
        latency = drill.latency()
    finally:
        drill.down()
    print(f"period {drill.period:g} s, T = {drill.T:g} s, tickTime {TICK_S * 1000:.0f} ms, group {stack.group}")
    print_table(rows, latency)
    if not args.own_stack:
        print(f"(the stack is still up{', started by the drill' if stack.started_stack else ''}: `make down` "
              "stops it)", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "latency": latency, "period_s": drill.period,
                                               "session_timeout_s": drill.T, "group": stack.group,
                                               "own_stack": args.own_stack, "quiet": drill.quiet}, indent=2))
    ok = all(r["invariants"] == "ok" and (r["recovery_s"] or 0) <= (r["budget_s"] or float("inf")) for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
