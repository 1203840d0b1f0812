"""The many-groups bench's measurements and report: ZooKeeper's own counters, CPU, table, plot.

ZooKeeper is read through its four-letter words (`harness.zookeeper.zk_command`): ``srvr``'s
``Zxid`` (the low 32 bits count committed transactions, so its delta over a window is the
number of writes exactly, while the high 32 bits, the leader epoch, stay the same), ``mntr``'s
latencies, packets and outstanding requests, and ``srst`` to reset the latency statistics at
the start of each window. CPU is read from ``/proc/<pid>/stat``.
"""
from __future__ import annotations

import os
from dataclasses import asdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from harness.zookeeper import zk_command

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BEND_RATIO = 0.9  # a step bends when it completes less than this share of the rounds offered


def mntr(port: int) -> dict[str, str]:
    """``mntr`` of one server as a dict (empty when it does not answer)."""
    try:
        answer = zk_command(port, "mntr", timeout=2.0)
    except OSError:
        return {}
    pairs = (line.split("\t", 1) for line in answer.splitlines() if "\t" in line)
    return {key: value.strip() for key, value in pairs}


def zxid(ports: Sequence[int]) -> int:
    """The newest zxid any server reports (``srvr``)."""
    newest = 0
    for port in ports:
        try:
            answer = zk_command(port, "srvr", timeout=2.0)
        except OSError:
            continue
        for line in answer.splitlines():
            if line.startswith("Zxid:"):
                newest = max(newest, int(line.split(":", 1)[1].strip(), 16))
    return newest


def reset_stats(ports: Sequence[int]) -> None:
    """``srst`` on every server (latency min/avg/max restart); a server that refuses it is left as is."""
    for port in ports:
        try:
            zk_command(port, "srst", timeout=2.0)
        except OSError:
            continue


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of `pid` so far (0 when it is gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def percentile(values: Sequence[float], q: float) -> float | None:
    """The `q`-th percentile (nearest rank) of `values`, or None when empty.

    >>> percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50), percentile([], 99)
    (3.0, None)
    """
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


@dataclass(frozen=True)
class Step:
    """What one step (a number of groups, one measuring window) measured."""

    groups: int
    nodes: int
    period_s: float
    window_s: float
    offered_rps: float
    completed_rps: float
    triggered_rps: float
    groups_completing: int
    txns: int
    txn_per_round: float | None
    txn_per_s: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    zk_avg_latency_ms: float | None
    zk_max_latency_ms: float | None
    zk_outstanding_max: int
    zk_packets_per_round: float | None
    zk_cpu: float
    edge_cpu: float
    aborted: int
    missing_readings: int
    sessions_lost: int
    startup_s: float
    load_avg: float

    @property
    def bent(self) -> bool:
        """Rounds/s no longer keep up with the offer, or the p99 round outlasts the period."""
        late = self.latency_p99_ms is not None and self.latency_p99_ms > 1000 * self.period_s
        return self.completed_rps < BEND_RATIO * self.offered_rps or late

    @property
    def zk_cpu_ms_per_round(self) -> float | None:
        """ZooKeeper's CPU (all three servers) per completed round."""
        return 1000 * self.zk_cpu / self.completed_rps if self.completed_rps else None

    @property
    def edge_cpu_ms_per_round(self) -> float | None:
        """The simulated nodes' CPU (worker processes, sinks included) per completed round."""
        return 1000 * self.edge_cpu / self.completed_rps if self.completed_rps else None

    def progress(self) -> str:
        return (f"[{self.groups:4d} groups, period {self.period_s:g} s] {self.completed_rps:6.1f}/"
                f"{self.offered_rps:.0f} rounds/s, "
                f"{_num(self.txn_per_round, 2)} ZK txn/round, p50 {_num(self.latency_p50_ms)} ms "
                f"p99 {_num(self.latency_p99_ms)} ms, ZK avg/max {_num(self.zk_avg_latency_ms, 1)}/"
                f"{_num(self.zk_max_latency_ms)} ms, CPU ZK {self.zk_cpu:.2f} edge {self.edge_cpu:.2f} cores, "
                f"{self.groups_completing}/{self.groups} groups completing" + ("  <- bent" if self.bent else ""))

    def as_dict(self) -> dict:
        return {**asdict(self), "bent": self.bent, "zk_cpu_ms_per_round": self.zk_cpu_ms_per_round,
                "edge_cpu_ms_per_round": self.edge_cpu_ms_per_round}


COLUMNS = (("groups", "groups", 0), ("period s", "period_s", 2), ("offered/s", "offered_rps", 0),
           ("rounds/s", "completed_rps", 1),
           ("groups ok", "groups_completing", 0), ("ZK txn/round", "txn_per_round", 2),
           ("ZK txn/s", "txn_per_s", 0), ("p50 ms", "latency_p50_ms", 0), ("p99 ms", "latency_p99_ms", 0),
           ("ZK avg ms", "zk_avg_latency_ms", 1), ("ZK max ms", "zk_max_latency_ms", 0),
           ("ZK outst.", "zk_outstanding_max", 0), ("CPU ZK", "zk_cpu", 2), ("CPU edge", "edge_cpu", 2),
           ("ZK CPU ms/round", "zk_cpu_ms_per_round", 1), ("edge CPU ms/round", "edge_cpu_ms_per_round", 1),
           ("aborted", "aborted", 0), ("sess. lost", "sessions_lost", 0))


def table(steps: Sequence[Step]) -> str:
    """A Markdown table of the steps."""
    lines = ["| " + " | ".join(title for title, _, _ in COLUMNS) + " | bent |",
             "|" + "---|" * (len(COLUMNS) + 1)]
    for step in steps:
        cells = [_num(getattr(step, name), digits) for _, name, digits in COLUMNS]
        lines.append("| " + " | ".join(cells) + f" | {'yes' if step.bent else 'no'} |")
    return "\n".join(lines)


def summary(steps: Sequence[Step]) -> str:
    """The sustained round rate, where it bends, and what that means in sensors at 1 Hz."""
    if not steps:
        return "no step measured"
    best = max(steps, key=lambda s: s.completed_rps)
    bent = next((s for s in steps if s.bent), None)
    fastest = min(s.period_s for s in steps)
    kept = [s for s in steps if not s.bent and s.completed_rps and s.period_s == fastest]
    txn = [s.txn_per_round for s in kept if s.txn_per_round is not None]
    lines = [f"highest rate: {best.completed_rps:.1f} rounds/s with {best.groups} groups "
             f"({3 * best.groups} nodes; period {best.period_s:g} s)",
             "bends at: " + (f"{bent.groups} groups ({bent.completed_rps:.1f} of {bent.offered_rps:.0f} rounds/s "
                             f"offered, p99 {_num(bent.latency_p99_ms)} ms)" if bent else "no step bent"),
             f"ZooKeeper transactions per round (steps at {fastest:g} s that kept up): "
             f"{_num(min(txn), 2)}-{_num(max(txn), 2)}" if txn else "ZooKeeper transactions per round: n/a",
             f"projection: one ensemble on this machine sustains about {best.completed_rps:.0f} rounds/s, i.e. "
             f"{best.completed_rps:.0f} sensor groups (one fused sensor each) at 1 Hz, "
             f"{3 * best.completed_rps:.0f} edge nodes, {best.txn_per_s:.0f} ZK writes/s, with the simulated "
             f"nodes sharing the machine's cores with the ensemble"]
    if len(kept) >= 2 and kept[-1].completed_rps > kept[0].completed_rps:
        # The slope between the steps that kept up leaves out the three JVMs' idle baseline.
        slope = (kept[-1].zk_cpu - kept[0].zk_cpu) / (kept[-1].completed_rps - kept[0].completed_rps)
        idle = kept[0].zk_cpu - slope * kept[0].completed_rps
        lines.append(f"ZooKeeper's own CPU (3 servers): about {1000 * slope:.1f} ms per extra round over an idle "
                     f"{idle:.2f} cores, between {kept[0].groups} and {kept[-1].groups} groups")
    split = split_writes([s for s in steps if not s.bent and s.txns >= 0])
    if split:
        per_round, per_node = split
        lines.append(f"ZooKeeper writes split: {per_round:.2f} per round + {per_node:.2f}/s per live node "
                     f"(its upkeep), i.e. {per_round + 3 * per_node:.1f} writes/s per group at 1 Hz")
    return "\n".join(lines)


def split_writes(steps: Sequence[Step]) -> tuple[float, float] | None:
    """Least squares of ZK writes/s = a x rounds/s + b x live nodes, over steps of two or more periods.

    At one period nodes and rounds grow together and cannot be told apart; a step at a longer
    period (the large steps) separates the per-round writes from the nodes' upkeep.

    Returns ``(a, b)``, or None when the steps hold a single period.
    """
    if len({s.period_s for s in steps}) < 2:
        return None
    x = np.array([[s.completed_rps, s.nodes] for s in steps], dtype=float)
    y = np.array([s.txn_per_s for s in steps], dtype=float)
    (a, b), *_ = np.linalg.lstsq(x, y, rcond=None)
    return float(a), float(b)


def plot(steps: Sequence[Step], path: Path) -> None:
    """Rounds/s against the offer, round latency and ZooKeeper writes per round, by group count."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [s.groups for s in steps]
    fig, (rate, latency, txn) = plt.subplots(1, 3, figsize=(15, 4.5))
    rate.plot(groups, [s.offered_rps for s in steps], "k--", label="offered")
    rate.plot(groups, [s.completed_rps for s in steps], "o-", label="completed")
    rate.set(xlabel="groups (3 nodes each)", ylabel="rounds/s", title="rounds per second, one ensemble")
    rate.legend()
    latency.plot(groups, [s.latency_p50_ms for s in steps], "o-", label="round p50")
    latency.plot(groups, [s.latency_p99_ms for s in steps], "s-", label="round p99")
    latency.plot(groups, [s.zk_max_latency_ms for s in steps], "^:", label="ZK max")
    latency.set(xlabel="groups", ylabel="ms", yscale="log", title="trigger -> delivered latency")
    latency.legend()
    txn.bar([str(g) for g in groups], [s.txn_per_round or 0 for s in steps])
    txn.set(xlabel="groups", ylabel="transactions", title="ZooKeeper writes per round")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _num(value: float | int | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)
