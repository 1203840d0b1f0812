"""harness/bench_storage.py on a tiny run: positive Redis CPU per reading and bytes per tier."""
from __future__ import annotations

from harness.bench_storage import run
from harness.bench_storage import table

PATHS = ("raw TS.ADD, pipelined", "edge aggregate stored", "plain reading stored", "edge aggregate stored and judged")
TIERS = ("reading", "reading_avg 1m", "reading_avg 1h", "score", "vote", "verdict", "write ids")


def test_tiny_run_measures_cpu_per_reading_and_bytes_per_tier(tmp_path):
    results = run(readings=50, sensors=1, hours=0.05, out_dir=tmp_path)

    assert [r["path"] for r in results["cpu"]] == list(PATHS)
    assert all(r["redis_cpu_us"] > 0 and r["readings_per_s_at_half_core"] > 0 for r in results["cpu"])
    rows = {r["kind"]: r for r in results["memory"]}
    assert set(TIERS) <= set(rows)
    for kind in TIERS:
        assert rows[kind]["bytes_per_sample"] > 0, kind
        assert rows[kind]["bytes_per_sensor_per_day"] > 0, kind
        assert rows[kind]["steady_bytes_per_sensor"] > 0, kind
    assert rows["score"]["keys_per_sensor"] == rows["vote"]["keys_per_sensor"] == 5
    assert results["steady_mb_per_sensor"] > 0
    assert (tmp_path / "results.json").exists() and (tmp_path / "storage.png").exists()
    assert "steady state" in table(results)
