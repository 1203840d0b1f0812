"""The independence report: co-alarms on normal readings, the bounds, and counting as the evaluation does."""
from __future__ import annotations

import csv
import json
from datetime import datetime
from datetime import timezone

import numpy as np

from offline.evaluation import independence
from offline.evaluation import replay as evaluate
from offline.evaluation.replay import DETECTORS
from offline.evaluation.replay import WINDOW
from offline.scoring import score_alarms

FOUR = DETECTORS[:4]  # the synthetic suites predate the context detector: it abstains there


def _series(stamps, windows, ratios, vote=None):
    ratios = np.asarray(ratios, dtype=np.float64)
    vote = (independence.votes(ratios).sum(axis=1) >= 3) if vote is None else np.asarray(vote)
    return independence.Series(np.asarray(stamps, dtype=np.float64), windows, ratios, vote)


def test_counting_matches_the_evaluations_scoring():
    rng = np.random.default_rng(4)
    stamps = np.arange(3000.0)
    windows = [(400.0, 700.0), (1500.0, 1520.0), (2500.0, 2900.0)]
    series = _series(stamps, windows, rng.random((3000, 4)))
    for rate in (0.001, 0.01, 0.05, 0.3):
        alarms = rng.random(3000) < rate
        expected = score_alarms(stamps, alarms, windows, WINDOW)
        assert series.count(alarms) == (expected["caught"], expected["false_alarms"]), rate


def test_co_alarms_tell_twins_from_independent_detectors():
    rng = np.random.default_rng(7)
    n = 20_000
    twin = rng.random(n) * 1.02  # about 2 % of readings above 1
    ratios = np.column_stack([rng.random(n) * 1.02, twin, twin, rng.random(n) * 1.02])
    ratios[:200, 0] = np.nan  # an abstention never votes
    series = _series(np.arange(float(n)), [(100.0, 150.0)], ratios)
    m = independence.co_alarms([series])
    assert np.allclose(np.diag(m), 1.0)
    assert m[1, 2] == m[2, 1] == 1.0  # twins always vote together
    assert m[0, 3] < 0.1 and m[3, 1] < 0.1  # independent ones about as often as they vote at all


def _write_suite(folder, rng, shared_noise: bool):
    """Three series; the three learned detectors see every fault, and on normal readings either
    err independently or share one noise (twins in all but name)."""
    thresholds = {"physical": 1.0, "isolation_forest": 0.5, "autoencoder": 2.0, "lstm": 4.0}  # no context detector
    for k in range(3):
        n = 4000
        stamps = 1.7e9 + np.arange(n, dtype=np.float64)
        starts = range(500, n - 200, 500)
        windows = [[stamps[s], stamps[s + 30]] for s in starts]
        inside = np.zeros(n, dtype=bool)
        for s in starts:
            inside[s:s + 31] = True
        noise = rng.exponential(0.2, (n, 4))
        if shared_noise:
            noise[:, 2] = noise[:, 3] = noise[:, 1]
        scores = noise
        scores[inside, 1:] += rng.uniform(0.6, 1.2, (inside.sum(), 1))  # one fault, seen by three
        raw = scores * np.array([thresholds[d] for d in FOUR])
        series = folder / f"series{k}"
        series.mkdir(parents=True)
        rows = [{"timestamp": t, **{f"{d}_score": v for d, v in zip(FOUR, row)},
                 **{f"{d}_threshold": thresholds[d] for d in FOUR}} for t, row in zip(stamps, raw)]
        sweep = evaluate.sweep(rows, stamps, [tuple(w) for w in windows])
        (series / "summary.json").write_text(json.dumps({"thresholds": thresholds, "windows": windows,
                                                         "sweep": sweep}))
        with open(series / "verdicts.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["timestamp", "verdict"] + [f"{d}_score" for d in FOUR])
            for t, row, r in zip(stamps, raw, scores):
                verdict = "critical" if (r > 1).sum() >= 3 else "normal"
                writer.writerow([datetime.fromtimestamp(t, timezone.utc).isoformat(), verdict, *row])


def test_the_report_tells_an_independent_panel_from_a_redundant_one(tmp_path):
    rng = np.random.default_rng(11)
    _write_suite(tmp_path / "independent", rng, shared_noise=False)
    _write_suite(tmp_path / "redundant", rng, shared_noise=True)
    independent = independence.report(tmp_path / "independent")
    redundant = independence.report(tmp_path / "redundant")
    assert independent["series"] == 3 and independent["vote"]["caught"] >= 20
    assert redundant["co_alarms"]["autoencoder"]["lstm"] == 1.0
    assert independent["co_alarms"]["autoencoder"]["lstm"] < 0.2
    assert independent["vote"]["ratio"] <= 1 / 3 < redundant["vote"]["ratio"]
    for found in (independent, redundant):
        perfect = found["perfect_in_seat"]["physical"]  # the labels in the seat that never saw a fault
        assert perfect["caught"] >= found["vote"]["caught"]
        bound = found["calibration_bound"]
        assert bound["caught"] >= found["vote"]["caught"] and bound["ratio"] <= found["vote"]["ratio"]
    text = independence.render(redundant)
    assert "| lstm |" in text and "replaced by the labels themselves" in text
    independence.plot(redundant, tmp_path / "independence.png")
    assert (tmp_path / "independence.png").stat().st_size > 10_000
