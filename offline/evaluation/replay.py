"""Replay a labelled series causally through every detector and the vote; score and plot it.

`evaluate` fits the sensor profile, the physical limits, the models and their thresholds on
the first rows (`offline.training`, one parameter set for every series), then judges every
later row one at a time with the panel `/detectar` uses and the in-process backend, and writes
``verdicts.csv``, ``summary.json`` and ``plot.png``. The command line is scripts/evaluate.py.
"""
from __future__ import annotations

import csv
import json
import shutil
import tempfile
from collections import deque
from datetime import datetime
from datetime import timezone
from pathlib import Path

import numpy as np

from offline.sources import TIME_COLUMNS
from offline.sources import parse_time
from webapp.detection.manifest import PANEL as DETECTORS

BASELINE = "zscore"  # the trivial baseline every table shows: the newest reading's z-score
ZSCORE_K = 4.0  # its threshold, chosen once for every series (|x - baseline mean| > 4 baseline std)
WINDOW = 10
BACK_IN_RANGE = 3  # a verdict must be normal again within this many readings back in range
# NAB's two temperature failure series judge the project from outside: never load them.
EXCLUDED = ("machine_temperature_system_failure", "ambient_temperature_system_failure")
PLAN_EPOCHS = 20
FALSE_ALARM_RATE = 0.002  # per window, each detector alone (TrainingPlan's default)
# Factors applied to every detector's calibrated threshold to trace its recall/false-alarm
# curve, so each can be compared with the vote at the vote's recall (`evaluate_suite`).
SWEEP = tuple(round(float(x), 4) for x in np.geomspace(0.25, 4.0, 33))


def load_series(path: Path, value_column: str, label_column: str | None, windows_json: Path | None,
                key: str | None) -> tuple[np.ndarray, np.ndarray, list[tuple[float, float]]]:
    """Times (s), values and labelled windows ``[(start_s, end_s)]`` of one CSV series."""
    if any(name in str(path) for name in EXCLUDED):
        raise ValueError(f"{path}: held out for an outside judge, never evaluated here")
    with open(path, encoding="utf-8", newline="") as handle:
        dialect = csv.Sniffer().sniff(handle.read(4096), delimiters=",;")
        handle.seek(0)
        rows = list(csv.DictReader(handle, dialect=dialect))
    time_column = next(c for c in TIME_COLUMNS if c in rows[0])
    times = np.array([parse_time(r[time_column]) for r in rows])
    values = np.array([float(r[value_column]) if r[value_column] not in ("", "nan") else np.nan for r in rows])
    windows: list[tuple[float, float]] = []
    if windows_json:
        spans = json.loads(Path(windows_json).read_text(encoding="utf-8"))[key]
        windows = [(parse_time(s), parse_time(e)) for s, e in spans]
    elif label_column and label_column in rows[0]:  # absent: an anomaly-free recording
        labels = np.array([float(r[label_column]) > 0 for r in rows])
        edges = np.flatnonzero(np.diff(np.concatenate([[0], labels.astype(int), [0]])))
        windows = [(float(times[a]), float(times[b - 1])) for a, b in zip(edges[::2], edges[1::2])]
    return times, values, windows


def baseline_limits(times: np.ndarray, values: np.ndarray, window: int):
    """Physical limits fitted on the baseline: its range widened by a quarter of its span on
    each side, 1.5 times its steepest change per second, and the stuck check unless the
    baseline itself holds `window` identical readings in a row."""
    from webapp.config import PhysicalLimits

    ok = np.isfinite(values)
    v, t = values[ok], times[ok]
    span = max(float(np.ptp(v)), 6 * float(np.std(v)), 1e-3 * max(1.0, abs(float(np.mean(v)))))
    rates = np.abs(np.diff(v)) / np.maximum(np.diff(t), 1e-3)
    max_rate = max(1.5 * float(rates.max(initial=0.0)), span / max(float(np.median(np.diff(t))), 1e-3) / 100)
    repeats = np.lib.stride_tricks.sliding_window_view(v, window) if len(v) >= window else np.zeros((0, window))
    stuck_in_baseline = bool(len(repeats) and (np.ptp(repeats, axis=1) == 0).any())
    return PhysicalLimits(low=float(v.min()) - span / 4, high=float(v.max()) + span / 4,
                          max_rate=max_rate, stuck_count=0 if stuck_in_baseline else window)


def replay(panel, times: np.ndarray, values: np.ndarray, start: int, sensor: str) -> list[dict]:
    """Judge every reading from `start` on, one at a time, with the window (and the context)
    ending at it, as `webapp.judging.judge_newest` does (the reference level following the
    readings)."""
    from webapp.detection.base import Window

    size = max(WINDOW, panel.readings)  # the context detector judges with a longer past
    recent: deque = deque(maxlen=size)
    for i in range(max(0, start - size + 1), start):
        if np.isfinite(values[i]):
            recent.append((int(times[i] * 1000), float(values[i])))
    rows = []
    level = None  # the sensor's reference level, kept in Redis by the web tier
    peaks = None  # the detectors' recent peaks, idem
    for i in range(start, len(values)):
        if not np.isfinite(values[i]):
            continue  # a dropout: no reading, nothing to judge
        recent.append((int(times[i] * 1000), float(values[i])))
        window = Window(tuple(v for _, v in recent), tuple(t for t, _ in recent), sensor)
        decision = panel.judge(window, level, peaks)
        level = panel.follow(level, window, decision)
        peaks = panel.remember(peaks, decision, window.timestamps[-1])
        row = {"timestamp": float(times[i]), "value": float(values[i]), "verdict": decision.verdict,
               "reference_level": decision.reference}
        for ballot in decision.ballots:
            row[f"{ballot.detector}_vote"] = ballot.vote
            row[f"{ballot.detector}_score"] = ballot.score
            row[f"{ballot.detector}_threshold"] = ballot.threshold
            row[f"{ballot.detector}_bar"] = ballot.bar  # its recent peak, which the score had to beat
            row[f"{ballot.detector}_held"] = ballot.held  # a vote held from the reading before
        rows.append(row)
    return rows


def evaluate(times: np.ndarray, values: np.ndarray, windows: list[tuple[float, float]], baseline_rows: int | None,
             out: Path, name: str, seed: int = 0, epochs: int = PLAN_EPOCHS,
             false_alarm_rate: float = FALSE_ALARM_RATE, cache: Path | None = None,
             overrides: dict | None = None) -> dict:
    """Fit on the baseline, replay the rest, write verdicts.csv, summary.json and plot.png.

    `overrides` are settings of the panel (``drift_tau``, ``vote_required``) for experiments. With
    `cache`, the trained models are kept there under a key of everything they depend on
    (the baseline readings, the training plan and the training code), and reused."""
    from offline.evaluation.cache import trained_models
    from offline.rules import calibrate_rules
    from offline.scoring import score_alarms
    from offline.training import TrainingPlan
    from webapp.config import Settings
    from webapp.detection import build_panel
    from webapp.inference.inprocess import unload

    n = baseline_rows or min(max(400, int(0.15 * len(values))), len(values) // 2)
    base = values[:n].copy()
    for s, e in windows:  # labelled rows never teach the models what normal is
        base[(times[:n] >= s) & (times[:n] <= e)] = np.nan
    out.mkdir(parents=True, exist_ok=True)
    plan = TrainingPlan(epochs=epochs, seed=seed, false_alarm_rate=false_alarm_rate)
    with tempfile.TemporaryDirectory(prefix="ag-eval-") as scratch:
        # The model-free detectors that need times are calibrated on a copy (`offline.rules`),
        # so the cache holds only what training made and a change to them retrains nothing.
        models = Path(scratch) / "models"
        shutil.copytree(trained_models(base, plan, name, Path(scratch) / "trained", cache), models)
        calibrate_rules(models, base, times[:n], plan)
        settings = Settings().replace(models_dir=str(models), inference_backend="inprocess", window_size=WINDOW,
                                      physical=baseline_limits(times[:n], base, WINDOW), **(overrides or {}))
        panel = build_panel(settings)
        rows = replay(panel, times, values, n, name)
        unload(str(models))
    stamps = np.array([r["timestamp"] for r in rows])
    judged = np.array([r["value"] for r in rows])
    zscores = baseline_zscores(base, judged)
    for row, z in zip(rows, zscores):
        row[f"{BASELINE}_score"], row[f"{BASELINE}_threshold"] = float(z), ZSCORE_K
        row[f"{BASELINE}_vote"] = bool(z > ZSCORE_K)
    _write_verdicts(out / "verdicts.csv", rows)
    # A detector not seated for this series (the seasonal one, `manifest.OPTIONAL`) never alarms.
    alarms = {d: np.array([bool(r.get(f"{d}_vote")) for r in rows]) for d in (*DETECTORS, BASELINE)}
    alarms["vote"] = np.array([r["verdict"] == "critical" for r in rows])
    outside = out_of_range(base, judged)
    results = {k: score_alarms(stamps, a, windows, WINDOW) for k, a in alarms.items()}
    for k, a in alarms.items():
        results[k]["back_in_range"] = back_in_range(a, outside)
    summary = {"series": name, "baseline_rows": n, "replayed": len(rows), "windows": [list(w) for w in windows],
               "quorum": [panel.required, len(panel.names)],
               "period_s": float(np.median(np.diff(times))) if len(times) > 1 else None,
               "results": results,
               "thresholds": {d: next((r[f"{d}_threshold"] for r in rows if r.get(f"{d}_threshold") is not None), None)
                              for d in (*DETECTORS, BASELINE)},
               "sweep": sweep(rows, stamps, windows)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    levels = np.array([np.nan if r["reference_level"] is None else r["reference_level"] for r in rows])
    _plot(out / "plot.png", times, values, n, windows, stamps, alarms, name, levels)
    return summary


def baseline_zscores(base: np.ndarray, judged: np.ndarray) -> np.ndarray:
    """The trivial baseline: each reading's distance from the baseline mean in baseline standard
    deviations (the standard deviation floored as the models' profile floors it).

    >>> baseline_zscores(np.array([9.0, 11.0]), np.array([10.0, 14.0])).tolist()
    [0.0, 4.0]
    """
    from webapp.detection.features import Profile

    profile = Profile.fit(base)
    return np.abs(judged - profile.center) / profile.scale


def out_of_range(base: np.ndarray, judged: np.ndarray) -> np.ndarray:
    """Per judged reading: is it outside everything the baseline held (its minimum to maximum)?"""
    finite = base[np.isfinite(base)]
    return (judged < finite.min()) | (judged > finite.max())


def back_in_range(alarms: np.ndarray, outside: np.ndarray, within: int = BACK_IN_RANGE) -> int:
    """Alarms on readings back in range: at least the `within`-th reading in a row inside the
    baseline's range, while a reading outside it is still in the judged window (the verdict
    should have ended with the excursion).

    >>> outside = np.array([0, 1, 0, 0, 0, 0, 0, 0], bool)
    >>> back_in_range(np.array([0, 1, 1, 1, 1, 1, 1, 0], bool), outside)
    3
    """
    alarms, outside = np.asarray(alarms, bool), np.asarray(outside, bool)
    count = 0
    for i in np.flatnonzero(alarms):
        if i >= within and not outside[i - within + 1:i + 1].any() and outside[max(0, i - WINDOW + 1):i].any():
            count += 1
    return count


def sweep(rows: list[dict], stamps: np.ndarray, windows: list[tuple[float, float]]) -> dict[str, list[list]]:
    """Each detector alone with its threshold scaled by every factor of `SWEEP`:
    ``[factor, windows caught, false-alarm incidents]`` (an abstention never alarms; a score
    must also beat the detector's recent peak, as its vote did)."""
    from offline.scoring import score_alarms

    curves = {}
    for d in (*DETECTORS, BASELINE):
        scores = np.array([np.nan if r.get(f"{d}_score") is None else r[f"{d}_score"] for r in rows], dtype=np.float64)
        bars = np.array([np.nan if r.get(f"{d}_bar") is None else r[f"{d}_bar"] for r in rows], dtype=np.float64)
        threshold = next((r[f"{d}_threshold"] for r in rows if r.get(f"{d}_threshold") is not None), None)
        if threshold is None or threshold <= 0:
            continue  # never answered, or a threshold that scaling would not make stricter
        curve = []
        beats = ~(scores <= bars)  # no peak yet (NaN) holds nothing back
        for factor in SWEEP:
            with np.errstate(invalid="ignore"):
                alarms = (scores > factor * threshold) & beats
            result = score_alarms(stamps, alarms, windows, WINDOW)
            curve.append([factor, result["caught"], result["false_alarms"]])
        curves[d] = curve
    return curves


def _write_verdicts(path: Path, rows: list[dict]) -> None:
    columns = (["timestamp", "value", "verdict", "reference_level"]
               + [f"{d}_{k}" for d in (*DETECTORS, BASELINE) for k in ("vote", "score", "bar", "held")])
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "timestamp": datetime.fromtimestamp(row["timestamp"], timezone.utc).isoformat()})


def _plot(path: Path, times, values, n, windows, stamps, alarms, name, levels) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = times[0]
    hours = (times - t0) / 3600.0
    fig, (top, rug) = plt.subplots(2, 1, figsize=(12, 5), sharex=True, height_ratios=[3, 1.4])
    top.plot(hours, values, lw=0.7, color="0.2")
    top.plot((stamps - t0) / 3600.0, levels, lw=1.0, ls="--", color="tab:green", label="reference level")
    top.axvspan(hours[0], hours[n - 1], color="0.85", label="baseline (fit)")
    for i, (s, e) in enumerate(windows):
        top.axvspan((s - t0) / 3600, (e - t0) / 3600, color="tab:orange", alpha=0.3,
                    label="labelled" if i == 0 else None)
    top.set_title(name)
    top.legend(loc="upper left", fontsize=8)
    for row, (label, flags) in enumerate(alarms.items()):
        x = (stamps[flags] - t0) / 3600.0
        rug.plot(x, np.full(x.shape, row), "|", ms=8, color="tab:red" if label == "vote" else "tab:blue")
    rug.set_yticks(range(len(alarms)), list(alarms))
    rug.set_xlabel("hours")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
