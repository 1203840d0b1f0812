"""``make bench-groups``: hundreds of edge groups against one ZooKeeper ensemble, stepped up.

The harness starts a real 3-node ensemble (`harness.zookeeper`), then worker processes
(`harness.many_groups_worker`) that each run many real edge nodes, three per group, with a
recording sink in place of the web tier. It adds groups step by step (10, 50, 100, 200, 400
by default), lets each step settle, and measures one window per step: ZooKeeper transactions
per round from the ensemble's zxid, rounds completed per second against the rounds offered
(groups / period), the trigger → delivered latency, ZooKeeper's own latency and CPU
(`harness.many_groups_report`). It prints a line per step, a table, and where it bends, and
writes ``results.json`` and ``bench-groups.png`` under ``out/bench-groups/``.

    python -m harness.many_groups [--steps 10,20,30,40,100] [--window 20] [--workers 4]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from kazoo.client import KazooClient
from kazoo.retry import KazooRetry

from harness import many_groups_report as report
from harness.faults.znodes import set_config
from harness.many_groups_worker import NODES_PER_GROUP
from harness.many_groups_worker import WorkerSpec
from harness.many_groups_worker import run as run_worker
from harness.process import free_ports
from harness.zookeeper import ZooKeeperEnsemble
from harness.zookeeper import ZooKeeperOptions

OUT_DIR = Path("out/bench-groups")
# Every node is a client of its own: ZooKeeper's default of 60 connections per address would
# refuse most of them, all coming from 127.0.0.1. srst resets the latency statistics per window.
ENSEMBLE_CFG = (("maxClientCnxns", "0"), ("4lw.commands.whitelist", "ruok,srvr,mntr,srst"))
REPLY_TIMEOUT_S = 120.0
COLLAPSED = 0.5  # no step after one that completed less than this share of its offered rounds


class WorkerUnresponsive(RuntimeError):
    """Raised when a worker process does not answer a command in time (its machine is swamped)."""


@dataclass(frozen=True)
class BenchOptions:
    """How the bench steps: group counts, period, window per step, worker processes.

    Steps of up to `full_rate_groups` groups run at `period_s` (1 Hz): they find the round rate
    the machine sustains and where it bends. Larger steps run at ``groups / scale_rps`` seconds
    (set live through the cluster config znode, as an operator would), offering `scale_rps`
    rounds/s: they show whether one ensemble holds hundreds of groups (sessions, watches,
    znodes) and what an idle group costs, without offering this 2-core machine many times what
    it can do, which measured only its collapse (300 nodes at 30 rounds/s offered: sessions
    expiring faster than they reconnect). The default stops at 100 groups (300 nodes): on this
    shared 2-core machine 200 groups (600 Python nodes, ~5,000 threads) swamped it twice even
    at 10 rounds/s (load average near 300, sessions expiring in storms, a worker unresponsive
    for 2 minutes); ``--steps 10,20,30,40,100,200,400`` tries more on a bigger host.
    `session_timeout_s` is the ensemble's maximum (10 s at tickTime 500 ms): kazoo's connect
    timeout is a third of it, and on this saturated machine the edge default of 5 s let
    handshakes time out in storms.
    """

    steps: tuple[int, ...] = (10, 20, 30, 40, 100)
    period_s: float = 1.0
    full_rate_groups: int = 40
    scale_rps: float = 10.0
    window_s: float = 20.0
    settle_s: float = 5.0
    workers: int = 4
    session_timeout_s: float = 10.0
    max_minutes: float = 9.0


@dataclass(frozen=True)
class Ensemble:
    """What the bench needs to know of the ensemble: clients' hosts, client ports, server pids."""

    hosts: str
    ports: tuple[int, ...]
    pids: Callable[[], Sequence[int | None]]


class Fleet:
    """The worker processes and the groups they run (spread round-robin)."""

    def __init__(self, ensemble: Ensemble, zk_root: str, options: BenchOptions, work_dir: Path) -> None:
        context = multiprocessing.get_context("spawn")
        self.groups: list[str] = []
        self._conns = []
        self.processes = []
        for index in range(options.workers):
            spec = WorkerSpec(index, ensemble.hosts, zk_root, options.period_s, options.session_timeout_s,
                              str(work_dir / "spool"), str(work_dir / f"worker-{index}.log"))
            parent, child = context.Pipe()
            process = context.Process(target=run_worker, args=(child, spec), name=f"bench-groups-{index}")
            process.start()
            self._conns.append(parent)
            self.processes.append(process)
        self._gather()

    @property
    def pids(self) -> list[int | None]:
        return [process.pid for process in self.processes]

    def add(self, count: int) -> dict:
        """Start `count` more groups; returns the nodes running, the nodes that failed, the seconds taken."""
        new = [f"g{len(self.groups) + i:04d}" for i in range(count)]
        self.groups += new
        for index, conn in enumerate(self._conns):
            conn.send(("add", new[index::len(self._conns)]))
        replies = self._gather()
        return {"nodes": sum(r["nodes"] for r in replies), "failed": sum(r["failed"] for r in replies),
                "seconds": max(r["seconds"] for r in replies)}

    def snapshot(self) -> dict:
        """Every worker's counters and sink records, merged."""
        for conn in self._conns:
            conn.send(("snapshot",))
        merged: dict = {"counts": {}, "delivered": {}, "latencies_ms": [], "duplicates": 0, "led": 0,
                        "sessions_lost": 0, "crashed": 0, "nodes": 0}
        for reply in self._gather():
            for name, value in reply["counts"].items():
                merged["counts"][name] = merged["counts"].get(name, 0) + value
            merged["delivered"].update(reply["delivered"])
            merged["latencies_ms"] += reply["latencies_ms"]
            for key in ("duplicates", "led", "sessions_lost", "crashed", "nodes"):
                merged[key] += reply[key]
        return merged

    def stop(self, timeout: float = 60.0) -> None:
        """Stop every node (each leaves ZooKeeper cleanly), then the processes; kill what hangs."""
        for conn, process in zip(self._conns, self.processes):
            if process.is_alive():
                conn.send(("stop",))
        deadline = time.monotonic() + timeout
        for conn, process in zip(self._conns, self.processes):
            if conn.poll(max(0.1, deadline - time.monotonic())):
                conn.recv()
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(5)

    def _gather(self) -> list[dict]:
        replies = []
        for conn, process in zip(self._conns, self.processes):
            if not conn.poll(REPLY_TIMEOUT_S):
                raise WorkerUnresponsive(f"worker {process.name} (pid {process.pid}) did not answer "
                                   f"within {REPLY_TIMEOUT_S:.0f} s")
            replies.append(conn.recv())
        return replies


def _zk_sample(ensemble: Ensemble) -> list[dict[str, str]]:
    return [report.mntr(port) for port in ensemble.ports]


def _cpu(pids: Sequence[int | None]) -> float:
    return sum(report.cpu_seconds(pid) for pid in pids)


def measure(fleet: Fleet, ensemble: Ensemble, options: BenchOptions, period_s: float,
            startup_s: float) -> report.Step:
    """One window: ZooKeeper's zxid, counters and CPU, the nodes' counters and the sink's records."""
    report.reset_stats(ensemble.ports)
    zxid0, cpu0 = report.zxid(ensemble.ports), (_cpu(ensemble.pids()), _cpu(fleet.pids))
    mntr0, before = _zk_sample(ensemble), fleet.snapshot()
    started = time.monotonic()
    outstanding = 0
    while time.monotonic() < started + options.window_s:
        time.sleep(min(1.0, max(0.0, started + options.window_s - time.monotonic())))
        outstanding = max([outstanding] + [int(m.get("zk_outstanding_requests", 0)) for m in _zk_sample(ensemble)])
    after = fleet.snapshot()
    zxid1, mntr1 = report.zxid(ensemble.ports), _zk_sample(ensemble)
    cpu1 = (_cpu(ensemble.pids()), _cpu(fleet.pids))
    elapsed = time.monotonic() - started
    delivered = {g: n - before["delivered"].get(g, 0) for g, n in after["delivered"].items()}
    completed = sum(delivered.values())
    triggered = after["counts"].get("rounds", 0) - before["counts"].get("rounds", 0)
    txns = zxid1 - zxid0 if zxid1 >> 32 == zxid0 >> 32 else -1  # a new ZK leader epoch restarts the count
    packets = sum(int(m.get("zk_packets_received", 0)) for m in mntr1) - \
        sum(int(m.get("zk_packets_received", 0)) for m in mntr0)
    avg = [float(m["zk_avg_latency"]) for m in mntr1 if "zk_avg_latency" in m]
    worst = [float(m["zk_max_latency"]) for m in mntr1 if "zk_max_latency" in m]

    def delta(name: str) -> int:
        return after["counts"].get(name, 0) - before["counts"].get(name, 0)

    return report.Step(
        groups=len(fleet.groups), nodes=after["nodes"], period_s=period_s, window_s=round(elapsed, 2),
        offered_rps=len(fleet.groups) / period_s, completed_rps=completed / elapsed,
        triggered_rps=triggered / elapsed, groups_completing=sum(1 for n in delivered.values() if n > 0),
        txns=txns, txn_per_round=txns / triggered if triggered and txns >= 0 else None, txn_per_s=txns / elapsed,
        latency_p50_ms=report.percentile(after["latencies_ms"], 50),
        latency_p99_ms=report.percentile(after["latencies_ms"], 99),
        zk_avg_latency_ms=sum(avg) / len(avg) if avg else None, zk_max_latency_ms=max(worst) if worst else None,
        zk_outstanding_max=outstanding, zk_packets_per_round=packets / triggered if triggered else None,
        zk_cpu=(cpu1[0] - cpu0[0]) / elapsed, edge_cpu=(cpu1[1] - cpu0[1]) / elapsed,
        aborted=delta("rounds_aborted"), missing_readings=delta("missing_readings"),
        sessions_lost=after["sessions_lost"] - before["sessions_lost"], startup_s=round(startup_s, 1),
        load_avg=os.getloadavg()[0])


def settle(fleet: Fleet, timeout: float, extra_s: float) -> None:
    """Wait until every group delivered a round (or `timeout`), then `extra_s` more."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        delivered = fleet.snapshot()["delivered"]
        if all(delivered.get(g, 0) > 0 for g in fleet.groups):
            break
        time.sleep(1.0)
    time.sleep(extra_s)


def run_bench(ensemble: Ensemble, options: BenchOptions, work_dir: Path,
              progress: Callable[[str], None] = print, zk_root: str | None = None) -> list[report.Step]:
    """Step the groups up against `ensemble` under `zk_root` (default: a fresh one); one `Step` per group count.

    The groups' znodes stay under `zk_root` afterwards (the bench's ensemble is thrown away).
    """
    zk_root = zk_root or f"/bench-groups-{uuid.uuid4().hex[:8]}"
    begun = time.monotonic()
    # The bench's own client, on a machine it saturates: retry a connection loss rather than end the run.
    admin = KazooClient(hosts=ensemble.hosts, timeout=10.0, command_retry=KazooRetry(max_tries=20, delay=0.1,
                                                                                      max_delay=2.0))
    admin.start(timeout=30)
    fleet = Fleet(ensemble, zk_root, options, work_dir)
    steps: list[report.Step] = []
    try:
        for target in options.steps:
            if time.monotonic() - begun > 60 * options.max_minutes:
                progress(f"[{target:4d} groups] skipped: the run is past its {options.max_minutes:g} min bound")
                break
            period = options.period_s if target <= options.full_rate_groups else target / options.scale_rps
            last = steps[-1] if steps else None
            if last and (last.sessions_lost > COLLAPSED * last.nodes or (
                    last.completed_rps < COLLAPSED * last.offered_rps and target / period >= last.offered_rps)):
                progress(f"[{target:4d} groups] skipped: the last step completed less than {COLLAPSED:.0%} of the "
                         "rounds it offered or lost sessions of over half its nodes; more groups would measure "
                         "only this machine's collapse")
                break
            admin.retry(set_config, admin, {"sampling_period_s": period}, root=zk_root)  # applied live
            try:
                added = fleet.add(target - len(fleet.groups))
            except WorkerUnresponsive as exc:
                progress(f"[{target:4d} groups] aborted while starting its nodes: {exc}")
                break
            if added["failed"]:
                progress(f"[{target:4d} groups] {added['failed']} nodes did not start (see the worker logs)")
            settle(fleet, timeout=30.0, extra_s=max(options.settle_s, 2 * period))
            step = measure(fleet, ensemble, options, period, added["seconds"])
            steps.append(step)
            progress(step.progress())
    finally:
        fleet.stop()
        admin.stop()
        admin.close()
    return steps


def _parse(argv: Sequence[str] | None) -> tuple[BenchOptions, Path]:
    p = argparse.ArgumentParser(prog="python -m harness.many_groups", description=__doc__.split("\n\n")[0])
    defaults = BenchOptions()
    p.add_argument("--steps", default=",".join(map(str, defaults.steps)), help="group counts, ascending")
    p.add_argument("--period", type=float, default=defaults.period_s, help="sampling period (s)")
    p.add_argument("--full-rate-groups", type=int, default=defaults.full_rate_groups,
                   help="steps up to this many groups run at --period")
    p.add_argument("--scale-rps", type=float, default=defaults.scale_rps,
                   help="rounds/s offered by larger steps (their period is groups / this)")
    p.add_argument("--window", type=float, default=defaults.window_s, help="measuring window per step (s)")
    p.add_argument("--settle", type=float, default=defaults.settle_s, help="seconds between start and window")
    p.add_argument("--workers", type=int, default=defaults.workers, help="worker processes")
    p.add_argument("--session-timeout", type=float, default=defaults.session_timeout_s)
    p.add_argument("--max-minutes", type=float, default=defaults.max_minutes, help="no new step after this")
    p.add_argument("--out", type=Path, default=OUT_DIR)
    args = p.parse_args(argv)
    steps = tuple(int(s) for s in args.steps.split(",") if s.strip())
    if not steps or list(steps) != sorted(set(steps)) or steps[0] < 1:
        p.error("--steps must be ascending positive group counts")
    return BenchOptions(steps, args.period, args.full_rate_groups, args.scale_rps, args.window, args.settle,
                        args.workers, args.session_timeout, args.max_minutes), args.out


def main(argv: Sequence[str] | None = None) -> int:
    options, out = _parse(argv)
    work_dir = Path(tempfile.mkdtemp(prefix="bench-groups-"))
    zk = ZooKeeperEnsemble(work_dir / "zk", free_ports(3), options=ZooKeeperOptions(heap_mb=512,
                                                                                    extra_cfg=ENSEMBLE_CFG))
    print(f"bench-groups: {options.steps} groups x {NODES_PER_GROUP} nodes, period {options.period_s:g} s up to "
          f"{options.full_rate_groups} groups, then {options.scale_rps:g} rounds/s offered, "
          f"window {options.window_s:g} s, {options.workers} worker processes, ensemble {zk.hosts}; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    try:
        zk.start()
        zk.wait_ready()
        ensemble = Ensemble(zk.hosts, tuple(p.client for p in zk.ports), lambda: zk.pids)
        steps = run_bench(ensemble, options, work_dir, progress=lambda line: print(line, flush=True))
    finally:
        zk.stop()
        out.mkdir(parents=True, exist_ok=True)
        for log in work_dir.glob("worker-*.log"):  # warnings of the edge nodes (aborted rounds, ...)
            shutil.copy(log, out / log.name)
        shutil.rmtree(work_dir, ignore_errors=True)
    (out / "results.json").write_text(json.dumps({"options": asdict(options), "steps": [s.as_dict() for s in steps]},
                                                 indent=2))
    report.plot(steps, out / "bench-groups.png")
    print(report.table(steps))
    print(report.summary(steps))
    print(f"wrote {out / 'results.json'}, {out / 'bench-groups.png'} and the workers' logs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
