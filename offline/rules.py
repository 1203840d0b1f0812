"""Calibrating the model-free detectors that need the readings' times, after training.

`offline.training` trains and calibrates from the readings alone. The seasonal detector
(`webapp.detection.seasonal`) pairs readings a day apart, so it is calibrated here, from the
same readings *with their times*, at the same false-alarm rate, on every score (it fits
nothing but a scale floor), and added to the manifest training wrote. It needs no model, so
changing it never retrains one: `scripts/train.py` calls this after training, and the
evaluation on every replay (on a copy of its cached models). Where it cannot be calibrated
(under two days of readings, or a day too many readings for one judgement) the manifest gets
no entry and the panel does not seat it (`webapp.detection.manifest.OPTIONAL`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from offline.training import TrainingPlan
from offline.training import manifest_entry
from webapp.detection.manifest import MANIFEST
from webapp.detection.seasonal import DAY_S
from webapp.detection.seasonal import MAX_READINGS
from webapp.detection.seasonal import SeasonalDetector


def seasonal_entry(values: np.ndarray, times_s: np.ndarray, plan: TrainingPlan,
                   version: int) -> tuple[dict | None, str]:
    """The seasonal detector's manifest entry calibrated on normal readings and their times (s),
    or None and the reason it cannot be seated."""
    values, times_s = np.asarray(values, dtype=np.float64), np.asarray(times_s, dtype=np.float64)
    finite = np.isfinite(values)
    values, times_s = values[finite], times_s[finite]  # as training drops them
    if len(values) < 2 or times_s[-1] - times_s[0] < 2 * DAY_S:
        return None, "needs two days of training readings"
    period = float(np.median(np.diff(times_s)))
    detector = SeasonalDetector(period_s=round(period, 3)).fit_series(values)
    if detector.readings > MAX_READINGS:
        return None, f"a day and its context are {detector.readings} readings at {period:g} s (most {MAX_READINGS})"
    # Every score, not only the held-out blocks': it fits nothing but the scale that floors its
    # spread, and with two days of readings only the second day's have a reading a day before
    # them, so the held-out blocks left about a hundred scores to set a 99.8 % quantile from.
    scores = detector.score_series(values, np.round(times_s * 1000).astype(np.int64))
    if np.isfinite(scores).sum() < 100:
        return None, "fewer than 100 readings with a reading a day before"
    entry = manifest_entry(detector, scores, plan, version, params=detector.params(), window_size=detector.readings)
    return entry, "calibrated"


def calibrate_rules(models_dir: str | Path, values: np.ndarray, times_s: np.ndarray,
                    plan: TrainingPlan | None = None) -> str:
    """Add the seasonal detector's entry to the manifest in `models_dir` (written by training on
    `values`), or leave it out; returns what was done, for the caller to print."""
    path = Path(models_dir) / MANIFEST
    body = json.loads(path.read_text(encoding="utf-8"))
    version = max(int(e["version"]) for e in body["models"].values())
    plan = plan or TrainingPlan(**body.get("training", {}).get("plan", {}))
    entry, reason = seasonal_entry(values, times_s, plan, version)
    body["models"].pop("seasonal", None)
    if entry is not None:
        body["models"]["seasonal"] = entry
    path.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if entry is None:
        return f"seasonal: not seated ({reason})"
    return (f"seasonal: version {version}, threshold {entry['threshold']:.6g}, "
            f"reads {entry['window_size']} readings")
