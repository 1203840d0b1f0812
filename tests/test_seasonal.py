"""The seasonal detector: readings paired a day apart by time, calibrated with the training
readings' times (`offline.rules`), and seated only where it can be calibrated."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from offline.rules import calibrate_rules
from offline.rules import seasonal_entry
from offline.training import TrainingPlan
from webapp.config import Settings
from webapp.detection import build_panel
from webapp.detection.base import DetectorUnavailable
from webapp.detection.base import Window
from webapp.detection.seasonal import DAY_S
from webapp.detection.seasonal import SeasonalDetector
from webapp.detection.seasonal import day_over_day

ROOT = Path(__file__).resolve().parents[1]
STEP = 300  # five minutes
PLAN = TrainingPlan()


def daily(days: float, seed: int = 0, step: float = STEP, jitter: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Times (s) and readings of a sensor with a daily cycle of ±2 around 20, and noise."""
    rng = np.random.default_rng(seed)
    times = np.arange(0, days * DAY_S, step, dtype=np.float64)
    times = times + rng.uniform(-jitter, jitter, len(times))
    return times, 20 + 2 * np.sin(2 * np.pi * times / DAY_S) + rng.normal(0, 0.1, len(times))


def window(times: np.ndarray, values: np.ndarray) -> Window:
    return Window(tuple(values), tuple(int(t) for t in np.round(times * 1000)))


def test_readings_are_paired_by_time_not_by_count():
    times, values = daily(2, jitter=60)
    keep = np.ones(len(times), bool)
    keep[300:310] = False  # ten readings lost today shift every later count, not the times
    times, values = times[keep], values[keep]
    diffs = day_over_day(values, np.round(times * 1000).astype(np.int64), DAY_S * 1000)
    assert np.isnan(diffs[times < DAY_S - STEP]).all()  # the first day has no yesterday
    paired = np.flatnonzero(np.isfinite(diffs))
    assert len(paired) > 250
    for i in paired:
        j = np.argmin(np.abs(times - (times[i] - DAY_S)))
        assert abs(times[j] - (times[i] - DAY_S)) < STEP and diffs[i] == pytest.approx(values[i] - values[j])


def test_a_missing_daily_cycle_is_seen_while_the_level_stays_usual():
    times, values = daily(4)
    entry, reason = seasonal_entry(values[times < 3 * DAY_S], times[times < 3 * DAY_S], PLAN, version=1)
    assert reason == "calibrated" and entry["window_size"] <= 600
    detector = SeasonalDetector(**entry["params"]).fit_series(values[times < 3 * DAY_S])
    flat = values.copy()
    day4 = times >= 3 * DAY_S + DAY_S / 8  # the fourth day's cycle stops an eighth of a day in
    flat[day4] = flat[np.flatnonzero(day4)[0] - 1] + np.random.default_rng(9).normal(0, 0.1, day4.sum())
    assert flat[day4].min() > values[times < 3 * DAY_S].min()  # inside the usual range all along
    end = np.flatnonzero(day4)[0] + 24  # two hours after the cycle stopped
    calm = detector.score_one(window(times[:end], values[:end]))
    stopped = detector.score_one(window(times[:end], flat[:end]))
    assert calm < entry["threshold"] < stopped


def test_it_abstains_without_a_day_before():
    times, values = daily(0.9)
    detector = SeasonalDetector(period_s=STEP).fit_series(values)
    with pytest.raises(DetectorUnavailable):
        detector.score_one(window(times, values))


def test_series_scores_are_the_judged_scores():
    times, values = daily(2.5, seed=3, jitter=30)
    stamps = np.round(times * 1000).astype(np.int64)
    detector = SeasonalDetector(period_s=STEP, context=50, min_context=10).fit_series(values)
    series = detector.score_series(values, stamps)
    assert np.isnan(series[: int(DAY_S / STEP) - 1]).all() and np.isfinite(series[-50:]).all()
    for i in (len(values) - 1, len(values) - 40):
        start = max(0, i + 1 - detector.readings)
        assert detector.score_one(window(times[start:i + 1], values[start:i + 1])) == pytest.approx(series[i])


@pytest.fixture()
def models(tmp_path) -> Path:
    """A copy of the committed 1 Hz models (no seasonal entry in their manifest)."""
    shutil.copytree(ROOT / "serving" / "models", tmp_path / "models")
    return tmp_path / "models"


def panel_of(models: Path):
    return build_panel(Settings().replace(models_dir=str(models), inference_backend="inprocess"))


def test_seated_where_calibrated(models):
    times, values = daily(3)
    said = calibrate_rules(models, values, times, PLAN)
    entry = json.loads((models / "manifest.json").read_text())["models"]["seasonal"]
    assert said.startswith("seasonal: version") and entry["threshold"] > 0
    panel = panel_of(models)
    assert panel.names[-1] == "seasonal" and len(panel.names) == 6
    assert panel.readings == entry["window_size"] == SeasonalDetector(**entry["params"]).readings


@pytest.mark.parametrize(("days", "step", "why"), [
    (1.5, STEP, "needs two days of training readings"),
    (2.2, 1.0, "a day and its context are"),  # at 1 Hz a day is 86,400 readings
])
def test_not_seated_where_it_cannot_be_calibrated(models, days, step, why):
    times = np.arange(0, days * DAY_S, step)
    values = 20 + np.sin(2 * np.pi * times / DAY_S)
    assert why in calibrate_rules(models, values, times, PLAN)
    assert "seasonal" not in json.loads((models / "manifest.json").read_text())["models"]
    panel = panel_of(models)
    assert "seasonal" not in panel.names and not panel.status().get("seasonal")
    assert len(panel.names) == 5 and all(state == "ok" for state in panel.status().values())
