"""Evaluation: causal replay through the panel, incident scoring, NAB score, outputs."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from edge.simulator import Fault
from edge.simulator import TemperatureSimulator
from scripts import evaluate
from scripts.evaluate_suite import aggregate
from scripts.evaluate_suite import render
from scripts.evaluate_suite import verdict
from scripts.evaluate_suite import write_table
from webapp.config import Settings
from webapp.detection import build_panel
from webapp.detection.incidents import incidents
from webapp.detection.incidents import nab_score
from webapp.detection.incidents import score_alarms


def test_incidents_close_after_a_quiet_gap():
    assert incidents([1, 0, 1, 0, 0, 1], gap=2) == [(0, 2), (5, 5)]
    assert incidents([0, 0], gap=3) == []


def test_score_alarms_counts_incidents_not_rows():
    times = np.arange(100.0) * 60
    alarms = np.zeros(100, bool)
    alarms[10:20] = True  # one false incident of ten rows
    alarms[50:53] = True  # a detection, 2 rows into the window
    result = score_alarms(times, alarms, [(48 * 60.0, 60 * 60.0)], gap=5)
    assert (result["caught"], result["false_alarms"], result["incidents"]) == (1, 1, 2)
    assert result["mean_delay_s"] == 120.0
    assert result["false_alarms_per_day"] == pytest.approx(1 / (99 * 60 / 86400), rel=1e-3)


def test_nab_score_prefers_early_detection_and_punishes_false_alarms():
    window = [(100.0, 200.0)]
    early, late = nab_score([101.0], window), nab_score([190.0], window)
    assert 100 >= early > late > 0
    assert nab_score([101.0, 500.0, 900.0], window) < early
    assert nab_score([50.0], window) < 0
    assert nab_score([1.0], []) is None


def test_load_series_reads_label_columns_and_nab_windows(tmp_path):
    data = tmp_path / "s.csv"
    data.write_text("datetime;Temp;anomaly\n" + "".join(
        f"2020-03-09 10:00:{i:02d};{20 + i / 10};{1 if 5 <= i < 8 else 0}\n" for i in range(12)))
    times, values, windows = evaluate.load_series(data, "Temp", "anomaly", None, None)
    assert len(values) == 12 and windows == [(times[5], times[7])]
    spans = tmp_path / "w.json"
    spans.write_text(json.dumps({"k": [["2020-03-09 10:00:02.000000", "2020-03-09 10:00:04.000000"]]}))
    _, _, windows = evaluate.load_series(data, "Temp", None, spans, "k")
    assert windows == [(times[2], times[4])]


def test_baseline_limits_turn_the_stuck_check_off_for_flat_baselines():
    times = np.arange(50.0)
    assert evaluate.baseline_limits(times, 20 + np.sin(times), 10).stuck_count == 10
    assert evaluate.baseline_limits(times, np.full(50, 3.0), 10).stuck_count == 0


def test_replay_is_causal():
    times, values, _ = TemperatureSimulator(seed=3, faults=[Fault("spike", 140, 2, 6.0)]).series(200)
    panel = build_panel(Settings(inference_backend="inprocess"))
    full = evaluate.replay(panel, times, values, 100, "s")
    cut = evaluate.replay(panel, times[:150], values[:150], 100, "s")
    assert full[:50] == cut
    assert any(row["verdict"] == "critical" for row in cut[38:45])


def test_evaluate_writes_verdicts_summary_and_plot(tmp_path):
    faults = [Fault("spike", 900, 4, 5.0), Fault("dropout", 1100, 20)]
    times, values, _ = TemperatureSimulator(period_s=300, seed=9, faults=faults).series(1400)
    windows = [(900.0, 913.0), (1100.0, 1129.0)]
    summary = evaluate.evaluate(times, values, windows, 600, tmp_path, "sim", epochs=3)
    results = summary["results"]
    assert set(results) == {"physical", "isolation_forest", "autoencoder", "lstm", "vote"}
    assert results["vote"]["windows"] == 2 and results["vote"]["caught"] >= 1
    assert summary["replayed"] == 800 - 20  # dropouts are not judged
    with open(tmp_path / "verdicts.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == summary["replayed"]
    assert {"timestamp", "value", "verdict", "lstm_vote", "lstm_score"} <= set(rows[0])
    assert (tmp_path / "plot.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "summary.json").read_text())["results"] == results
    assert "reference_level" in rows[0] and set(summary["thresholds"]) == {"physical", "isolation_forest",
                                                                          "autoencoder", "lstm"}
    for detector, curve in summary["sweep"].items():  # a stricter threshold never catches more
        assert [p[0] for p in curve] == list(evaluate.SWEEP), detector
        assert all(a[1] >= b[1] for a, b in zip(curve, curve[1:])), (detector, curve)
        at_one = next(p for p in curve if p[0] == 1.0)
        assert at_one[1:] == [results[detector]["caught"], results[detector]["false_alarms"]], detector


def test_the_verdict_compares_the_vote_with_each_detector_at_the_votes_recall():
    groups = aggregate([{"group": "g", "results": {
        d: {"windows": 4, "caught": c, "false_alarms": f, "days": 1.0, "mean_delay_s": None, "nab_standard": None}
        for d, c, f in (("physical", 3, 9), ("isolation_forest", 4, 30), ("autoencoder", 4, 20), ("lstm", 1, 1),
                        ("vote", 3, 2))},
        "sweep": {"physical": [[1.0, 3, 9], [2.0, 2, 1]], "isolation_forest": [[1.0, 4, 30], [2.0, 3, 12]],
                  "autoencoder": [[1.0, 4, 20], [2.0, 3, 6]], "lstm": [[0.25, 2, 50], [1.0, 1, 1]]}}])
    g = groups["g"]
    assert g["autoencoder"]["at_vote_recall"] == {"factor": 2.0, "caught": 3, "false_alarms": 6}
    assert g["lstm"]["at_vote_recall"] is None  # it never catches 3 of 4
    assert verdict(g) == {"best": "autoencoder", "best_false_alarms": 6, "ratio": 0.333, "met": True}
    assert "cannot" in render(groups) and "**met**" in render(groups)


def test_table_goes_between_the_docs_markers(tmp_path):
    page = tmp_path / "detection.md"
    page.write_text("intro\n<!-- evaluation-table:start -->\nold\n<!-- evaluation-table:end -->\nrest\n")
    write_table(page, "| new |")
    assert page.read_text() == "intro\n<!-- evaluation-table:start -->\n| new |\n<!-- evaluation-table:end -->\nrest\n"
