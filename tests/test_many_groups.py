"""The many-groups bench (`harness.many_groups`) on a small scale: five groups of real edge nodes."""
from __future__ import annotations

from harness.many_groups import BenchOptions
from harness.many_groups import Ensemble
from harness.many_groups import run_bench


def test_five_groups_complete_rounds_and_their_zookeeper_writes_are_counted(zk_ensemble, zk, tmp_path):
    ensemble = Ensemble(zk_ensemble.hosts, tuple(p.client for p in zk_ensemble.ports), lambda: zk_ensemble.pids)
    options = BenchOptions(steps=(5,), period_s=0.5, window_s=3.0, settle_s=0.5, workers=1, session_timeout_s=2.0)
    lines: list[str] = []

    [step] = run_bench(ensemble, options, tmp_path, progress=lines.append, zk_root=f"{zk.chroot}/aeroguard")

    assert (step.groups, step.nodes) == (5, 15)
    assert step.groups_completing == 5, lines
    assert step.completed_rps > 0 and step.latency_p50_ms is not None
    assert step.txns > 0 and step.txn_per_round > 0, lines
    assert len(lines) == 1 and "5/5 groups completing" in lines[0]
