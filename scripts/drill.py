"""Fault drill for the edge cluster: ``python -m scripts.drill [--period 1] [--faults ...]``.

Brings up a private stack through `scripts.servers` (a 3-node ZooKeeper ensemble, Redis with
TimeSeries, the real web tier from `webapp.create_app` on a loopback port) and three
``python -m edge`` processes of group ``drill`` with simulated sensors, then injects each
fault of RELIABILITY.md's matrix that concerns the edge (rows 1-6 and 9, plus a planned
SIGTERM), one after the other, and prints a table: fault, recovery time, rounds missed,
readings lost, readings duplicated, invariants I1-I6 (I7 for reconfiguration), and the
latency from a reading's measurement to its stored verdict. ``--json PATH`` also writes it.

Recovery is the time from the fault (or, for an outage, from its repair) to the next
aggregate the web tier stores. Budgets (issue 4): leader kill -9 <= T + tickTime + period;
SIGTERM <= one period; measured -> stored p99 <= 100 ms at a 1 s period.

The process, proxy and invariant tools live in `scripts.faultkit`, shared with the fault tests.
"""
from __future__ import annotations

import argparse
import bisect
import io
import json
import logging
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

from kazoo.exceptions import NoNodeError

from scripts.faultkit import EdgeProcess
from scripts.faultkit import Stored
from scripts.faultkit import all_events
from scripts.faultkit import check_invariants
from scripts.faultkit import leader_of
from scripts.faultkit import set_config
from scripts.servers import ROOT
from scripts.servers import free_port
from scripts.servers import wait_until

GROUP = "drill"
TICK_S = 0.5


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


class Drill:
    """A private stack plus three edge nodes; each ``fault_*`` method injects one fault."""

    def __init__(self, directory: Path, period: float, session_timeout: float) -> None:
        from scripts.servers import RedisServer
        from scripts.servers import ZooKeeperEnsemble
        from scripts.servers import free_ports

        self.dir = directory
        self.period = period
        self.T = session_timeout
        self.ensemble = ZooKeeperEnsemble(directory / "zk", free_ports(3), tick_ms=int(TICK_S * 1000))
        self.redis = RedisServer(directory / "redis", free_port())
        self.edges: dict[str, EdgeProcess] = {}
        self.rows: list[Row] = []

    # stack ------------------------------------------------------------------------------------
    def up(self) -> None:
        from kazoo.client import KazooClient
        from kazoo.retry import KazooRetry

        from webapp.config import Settings

        self.ensemble.start()
        self.ensemble.wait_ready(60)
        self.redis.start()
        self.redis.wait_ready(30)
        self.zk = KazooClient(self.ensemble.hosts, timeout=4.0,
                              connection_retry=KazooRetry(max_tries=-1, max_delay=1.0))
        self.zk.start(timeout=30)
        self.web = WebTier(Settings(redis_url=self.redis.url, zk_hosts=self.ensemble.hosts, key_prefix="drill:",
                                    hostname="drill-web", env="local"))
        self.web.start()
        set_config(self.zk, {"sampling_period_s": self.period, "api_urls": [self.web.url]})
        for i in (1, 2, 3):
            self.edges[f"edge-{i}"] = EdgeProcess(self.dir, GROUP, f"edge-{i}", self.ensemble.hosts,
                                                  "sim:base=60,amplitude=1,noise=0.05", self.T).start()
        self.leader()
        # Warm up past the web tier's first full window (its learned detectors load then), then
        # measure latency over a quiet stretch.
        self.settle(12)
        self.quiet: list[tuple[float, float]] = []
        self.steady(20)

    def down(self) -> None:
        for edge in self.edges.values():
            edge.stop()
        if getattr(self, "web", None):
            self.web.stop()
            if self.web.app.extensions.get("zk"):
                self.web.app.extensions["zk"].stop()
        if getattr(self, "zk", None):
            self.zk.stop()
            self.zk.close()
        self.redis.stop()
        self.ensemble.stop()

    def steady(self, rounds: int) -> None:
        """Let `rounds` rounds pass without a fault; latency is measured over these stretches."""
        start = time.time()
        self.settle(rounds)
        self.quiet.append((start, time.time()))

    def leader(self, above: int = -1, timeout: float = 30.0) -> tuple[EdgeProcess, int]:
        def probe():
            found = leader_of(self.zk, GROUP)
            return found if found and found[1] > above and found[0] in self.edges else None
        node_id, epoch = wait_until(probe, timeout, f"a leader above epoch {above}")
        return self.edges[node_id], epoch

    def settle(self, rounds: int, timeout: float = 60.0) -> None:
        now = time.time()
        wait_until(lambda: len(self.web.recorder.after(now)) >= rounds, timeout, f"{rounds} stored rounds")

    def next_stored(self, after: float, epoch: int | None = None, timeout: float = 60.0) -> float:
        return wait_until(lambda: next((s.answered for s in self.web.recorder.after(after)
                                        if epoch is None or s.doc["epoch"] == epoch), None), timeout,
                          "the next stored aggregate")

    def restart(self, edge: EdgeProcess) -> None:
        """Start `edge` again and wait until its new process (not the old session) is registered."""
        edge.stop()
        edge.start()
        path = f"/aeroguard/groups/{GROUP}/nodes/{edge.node_id}"

        def registered() -> bool:
            try:
                return json.loads(self.zk.get(path)[0]).get("pid") == edge.pid
            except (NoNodeError, ValueError):
                return False

        wait_until(registered, 30, f"{edge.node_id} registered again")

    def events(self) -> list[dict]:
        return all_events(self.edges.values())

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
        self.ensemble.kill_node(index)
        self.settle(5)
        row.recovery_s = max(self._longest_gap(row.started) - self.period, 0.0)
        self.ensemble.start_node(index)
        self.ensemble.wait_ready(60)
        lost = [e for e in self.events() if e["t"] > row.started and e.get("state") == "LOST"]
        same = self.leader()[1] == epoch
        row.extra_ok = same and not lost
        row.notes = f"pause beyond one period; same leader: {same}, sessions lost {len(lost)}"
        return row

    def fault_zk_follower_down(self) -> Row:
        leader = self.ensemble.leader()
        return self._zk_node_down(next(i for i in range(3) if i != leader), "ZooKeeper follower kill -9")

    def fault_zk_leader_down(self) -> Row:
        return self._zk_node_down(self.ensemble.leader(), "ZooKeeper leader kill -9")

    def fault_quorum_lost(self) -> Row:
        _, epoch = self.leader()
        leader = self.ensemble.leader()
        down = [leader, next(i for i in range(3) if i != leader)]
        row = Row("ZooKeeper quorum lost 3T", time.time(), budget_s=self.T + 2.0)
        for index in down:
            self.ensemble.kill_node(index)
        wait_until(lambda: time.time() > row.started + 3 * self.T, 4 * self.T, "three session timeouts")
        restarting = time.time()
        for index in down:
            self.ensemble.start_node(index)
        # Recovery counts from the moment a quorum serves again (not from the JVMs' start).
        wait_until(lambda: sum(self.ensemble.mode(i) in ("leader", "follower") for i in range(3)) >= 2, 60,
                   "a ZooKeeper quorum again")
        repaired = time.time()
        row.recovery_s = self.next_stored(repaired) - repaired
        during = [e for e in self.events() if e["kind"] in ("trigger", "delivery")
                  and row.started + self.T < e.get("sent_at", e["t"]) < restarting]
        row.extra_ok = self.leader()[1] == epoch and not during
        row.notes = f"same leader: {self.leader()[1] == epoch}; triggers/POSTs while cut off: {len(during)}"
        self.ensemble.wait_ready(60)
        return row

    def fault_follower_kill9(self) -> Row:
        leader, _ = self.leader()
        edge = next(e for e in self.edges.values() if e is not leader)
        row = Row("follower kill -9", time.time(),
                  budget_s=1.8 * self.period + 0.5)  # period + round timeout + delivery
        edge.kill()
        row.recovery_s = self.next_stored(row.started) - row.started
        gone = wait_until(lambda: edge.node_id not in self.zk.get_children(f"/aeroguard/groups/{GROUP}/nodes"),
                          30, "the dead follower left discovery")
        row.notes = f"left discovery after {time.time() - row.started:.1f} s" if gone else ""
        self.restart(edge)
        return row

    def fault_web_down(self, outage_s: float = 10.0) -> Row:
        row = Row(f"web tier down {outage_s:.0f} s", time.time(), budget_s=2.0 + self.period)
        self.web.stop()
        wait_until(lambda: time.time() > row.started + outage_s, outage_s + 1, "the outage")
        repaired = time.time()
        self.web.start()
        row.recovery_s = self.next_stored(repaired) - repaired
        triggered = {e["round"] for e in self.events() if e["kind"] == "trigger" and e["t"] > row.started}
        wait_until(lambda: triggered <= {s.doc["round"] for s in self.web.recorder.after(row.started)}, 60,
                   "the spool replayed")
        row.notes = f"replayed {len(triggered)} rounds in {time.time() - repaired:.1f} s"
        return row

    def fault_reconfig(self) -> Row:
        pids = {n: e.pid for n, e in self.edges.items()}
        row = Row("hot reconfig: bad values, 200 sets", time.time(), budget_s=1.0)
        rejected = []
        for bad in ('{"sampling_period_s": 1', '{"sampling_period_s": 0}', '{"colour": 1}'):
            at = time.time()
            set_config(self.zk, bad)
            rejected.append(wait_until(lambda: all(any(e["t"] > at for e in edge.events("config_rejected"))
                                                   for edge in self.edges.values()), 5, f"{bad} rejected"))
        burst = time.time()
        final = round(self.period * 0.8, 3)
        for i in range(200):
            set_config(self.zk, {"sampling_period_s": final if i == 199 else round(self.period + i / 1000, 3),
                                 "api_urls": [self.web.url]})
        last_set = time.time()

        def applied():
            times = [next((e["t"] for e in edge.events("config") if e["t"] > burst
                           and e["config"]["sampling_period_s"] == final), None) for edge in self.edges.values()]
            return max(times) if all(times) else None

        row.recovery_s = wait_until(applied, 10, "every node applied the last value") - last_set
        set_config(self.zk, {"sampling_period_s": self.period, "api_urls": [self.web.url]})
        same = {n: e.pid for n, e in self.edges.items()} == pids and all(e.alive() for e in self.edges.values())
        row.extra_ok = same and all(rejected)
        row.notes = (f"I7 (no restart): {'ok' if same else 'FAIL'}; 3 invalid values rejected by every node; "
                     f"200 sets written in {last_set - burst:.2f} s, the last applied everywhere "
                     f"{row.recovery_s:.2f} s after it")
        return row

    # report -----------------------------------------------------------------------------------
    def _longest_gap(self, after: float) -> float:
        arrivals = [after] + [s.answered for s in self.web.recorder.after(after)]
        return max(b - a for a, b in zip(arrivals, arrivals[1:]))

    def finish(self, row: Row) -> Row:
        self.settle(3)
        row.ended = time.time()
        stored = [s for s in self.web.recorder.stored if row.started - 2 * self.period < s.answered <= row.ended]
        events = self.events()
        rounds = sorted({s.doc["round"] for s in stored})
        missed = sorted(set(range(rounds[0], rounds[-1] + 1)) - set(rounds)) if rounds else []
        stored_keys = {(s.doc["epoch"], s.doc["round"]) for s in stored}
        window = [e for e in events if e["kind"] == "reading" and row.started <= e["t"] <= row.ended - self.period]
        lost = [e for e in window if (e["epoch"], e["round"]) not in stored_keys]
        counted = [(r["node_id"], s.doc["round"]) for s in stored for r in s.doc["readings"] + s.doc["excluded"]]
        verdict = check_invariants(stored, events)
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
        total, edge = [], []
        for s in self.web.recorder.stored:
            if not any(a <= s.doc["timestamp"] / 1000 and s.answered <= b for a, b in self.quiet):
                continue  # triggered and stored inside a quiet stretch (not a replay after a fault)
            for r in s.doc["readings"]:
                total.append(s.answered * 1000 - r["measured_at"])
                if (s.doc["epoch"], s.doc["round"]) in sent:
                    edge.append(sent[(s.doc["epoch"], s.doc["round"])] * 1000 - r["measured_at"])
        if not total:
            return {}
        return {"readings": len(total), "p50_ms": _pct(total, 0.5), "p99_ms": _pct(total, 0.99),
                "edge_p50_ms": _pct(edge, 0.5), "edge_p99_ms": _pct(edge, 0.99)}


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.drill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--period", type=float, default=1.0, help="sampling period (s)")
    parser.add_argument("--session-timeout", type=float, default=2.0, help="edge ZooKeeper session timeout T (s)")
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated subset of {','.join(FAULTS)}")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = set(faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown fault(s): {sorted(unknown)}")
    directory = Path(tempfile.mkdtemp(prefix="drill-", dir=ROOT / ".run" if (ROOT / ".run").is_dir() else None))
    drill = Drill(directory, args.period, args.session_timeout)
    print(f"drill: state and logs in {directory}", file=sys.stderr)
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
    print_table(rows, latency)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "latency": latency, "period_s": args.period,
                                               "session_timeout_s": args.session_timeout}, indent=2))
    ok = all(r["invariants"] == "ok" and (r["recovery_s"] or 0) <= (r["budget_s"] or float("inf")) for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
