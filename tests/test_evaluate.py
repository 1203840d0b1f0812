"""Evaluation: causal replay through the panel, incident scoring, NAB score, outputs."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from edge.simulator import Fault
from edge.simulator import TemperatureSimulator
from offline.evaluation import replay as evaluate
from offline.evaluation.suite import aggregate
from offline.evaluation.suite import render
from offline.evaluation.suite import verdict
from offline.evaluation.suite import write_table
from offline.scoring import incidents
from offline.scoring import nab_score
from offline.scoring import score_alarms
from webapp.config import Settings
from webapp.detection import build_panel
from webapp.detection.manifest import PANEL


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
    panel = build_panel(Settings().replace(inference_backend="inprocess"))
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
    assert set(results) == {*PANEL, "zscore", "vote"}
    assert all("back_in_range" in r for r in results.values())
    assert results["vote"]["windows"] == 2 and results["vote"]["caught"] >= 1
    assert summary["replayed"] == 800 - 20  # dropouts are not judged
    with open(tmp_path / "verdicts.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == summary["replayed"]
    assert {"timestamp", "value", "verdict", "lstm_vote", "lstm_score"} <= set(rows[0])
    assert (tmp_path / "plot.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "summary.json").read_text())["results"] == results
    assert "reference_level" in rows[0]
    assert set(summary["thresholds"]) == {*PANEL, "zscore"}
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
    g["vote"]["false_alarms"] = 9  # more than the autoencoder's 6 at the same recall
    assert verdict(g)["ratio"] == 1.5 and not verdict(g)["met"]


def test_the_baseline_is_the_newest_readings_z_score_and_scored_like_the_others(tmp_path):
    times = np.arange(1000.0)
    values = 20 + np.random.default_rng(1).uniform(-0.1, 0.1, 1000)  # bounded noise: never 4 std out
    values[800] += 2.0  # 35 standard deviations: the baseline must see it, at that reading only
    summary = evaluate.evaluate(times, values, [(795.0, 830.0)], 600, tmp_path, "z", epochs=1)
    z = summary["results"][evaluate.BASELINE]
    assert (z["caught"], z["false_alarms"]) == (1, 0) and z["mean_delay_s"] == 5.0
    assert summary["thresholds"][evaluate.BASELINE] == evaluate.ZSCORE_K


def test_alarms_on_readings_back_in_range_count_only_after_the_excursion_ended():
    outside = np.zeros(30, bool)
    outside[10] = True  # one reading out of range; 11 on are back in range
    lingering = np.zeros(30, bool)
    lingering[10:20] = True  # the alarm lasts while the reading is inside a 10-reading window
    prompt = np.zeros(30, bool)
    prompt[10:13] = True  # normal again on the third reading back in range
    assert evaluate.back_in_range(lingering, outside) == 7  # readings 13..19
    assert evaluate.back_in_range(prompt, outside) == 0
    assert evaluate.back_in_range(np.ones(30, bool), np.zeros(30, bool)) == 0  # no excursion: not this count


def test_nab_real_is_a_group_that_never_loads_the_held_out_series(tmp_path):
    from offline.evaluation.suite import published
    from offline.evaluation.suite import series_list

    real = tmp_path / "nab-real" / "realKnownCause"
    real.mkdir(parents=True)
    for name in ("nyc_taxi.csv", "machine_temperature_system_failure.csv"):
        (real / name).write_text("timestamp,value\n2014-01-01 00:00:00,1\n")
    (tmp_path / "nab-real" / "combined_windows.json").write_text('{"realKnownCause/nyc_taxi.csv": []}')
    (tmp_path / "nab-real" / "published_scores.csv").write_text(
        "detector,file,windows,raw_score,normalised_score,tp_rows,fp_rows\n"
        "a,x.csv,2,0,50.0,1,1\na,y.csv,1,0,70.0,1,1\na,z.csv,0,0,0.0,0,0\nb,x.csv,2,0,80.0,1,1\n")
    found = list(series_list(tmp_path, ("nab-real",)))
    assert [(g, n) for g, n, _ in found] == [("nab-real", "realKnownCause/nyc_taxi.csv")]
    assert found[0][2]()[2] == []
    with pytest.raises(ValueError, match="held out"):
        evaluate.load_series(real / "machine_temperature_system_failure.csv", "value", None, None, None)
    assert published(tmp_path) == {"b": 80.0, "a": 60.0}  # files without windows left out


def test_table_goes_between_the_docs_markers(tmp_path):
    page = tmp_path / "detection.md"
    page.write_text("intro\n<!-- evaluation-table:start -->\nold\n<!-- evaluation-table:end -->\nrest\n")
    write_table(page, "| new |")
    assert page.read_text() == "intro\n<!-- evaluation-table:start -->\n| new |\n<!-- evaluation-table:end -->\nrest\n"
