"""From per-reading alarms to incidents, and how incidents score against labelled windows.

A verdict describes one reading; an incident opens at the first alarm and closes after `gap`
readings without one, so an operator gets one alarm per fault. Evaluation counts incidents:
a labelled window is caught when an alarm falls inside it, and an incident that opens outside
every window is one false alarm. The NAB score uses the standard profile (A_TP = 1,
A_FP = -0.11, A_FN = -1) with incident openings as the detections.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

A_TP = 1.0
A_FP = -0.11
A_FN = -1.0


def incidents(alarms: Sequence[bool], gap: int) -> list[tuple[int, int]]:
    """``(first, last)`` row of each incident; one closes after `gap` rows without an alarm.

    >>> incidents([0, 1, 1, 0, 1, 0, 0, 0, 1], gap=2)
    [(1, 4), (8, 8)]
    """
    found: list[tuple[int, int]] = []
    start = last = None
    for i, alarm in enumerate(alarms):
        if alarm:
            if start is None:
                start = i
            last = i
        elif start is not None and i - last >= gap:
            found.append((start, last))
            start = None
    if start is not None:
        found.append((start, last))
    return found


def scaled_sigmoid(y: float) -> float:
    """NAB's weighting: ~1 at the start of a window (y = -1), 0 at its end, towards -1 after."""
    return -1.0 if y > 3.0 else 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def nab_score(detections: Sequence[float], windows: Sequence[tuple[float, float]]) -> float | None:
    """NAB standard-profile score of detection times against windows, normalised to [.., 100].

    0 is the score of a detector that never alarms, 100 of one alarming at every window's
    start and nowhere else. None when there are no windows (the score is undefined).

    >>> nab_score([10.0], [(10.0, 20.0)]) > 98
    True
    >>> nab_score([], [(10.0, 20.0)])
    0.0
    """
    if not windows:
        return None
    windows = sorted(windows)
    raw, caught = 0.0, set()
    for t in sorted(detections):
        inside = [i for i, (s, e) in enumerate(windows) if s <= t <= e]
        if inside:
            i = inside[0]
            if i not in caught:
                caught.add(i)
                s, e = windows[i]
                raw += A_TP * scaled_sigmoid((t - e) / max(e - s, 1e-9))
            continue
        before = [(s, e) for s, e in windows if e < t]
        if before:
            s, e = before[-1]
            raw += A_FP * abs(scaled_sigmoid((t - e) / max(e - s, 1e-9)))
        else:
            raw += A_FP
    raw += A_FN * (len(windows) - len(caught))
    null, perfect = A_FN * len(windows), A_TP * scaled_sigmoid(-1.0) * len(windows)
    return round(100.0 * (raw - null) / (perfect - null), 2)


def score_alarms(times_s: np.ndarray, alarms: np.ndarray, windows: Sequence[tuple[float, float]], gap: int) -> dict:
    """Caught windows, false-alarm incidents (and per day), mean detection delay, NAB score."""
    times_s = np.asarray(times_s, dtype=np.float64)
    alarms = np.asarray(alarms, dtype=bool)
    found = incidents(alarms, gap)
    openings = [float(times_s[first]) for first, _ in found]
    false = [t for t in openings if not any(s <= t <= e for s, e in windows)]
    delays = []
    for s, e in windows:
        hit = times_s[alarms & (times_s >= s) & (times_s <= e)]
        if hit.size:
            delays.append(float(hit[0] - s))
    days = max(float(times_s[-1] - times_s[0]), 1.0) / 86400.0 if len(times_s) else 0.0
    return {
        "windows": len(windows),
        "caught": len(delays),
        "incidents": len(found),
        "false_alarms": len(false),
        "false_alarms_per_day": round(len(false) / days, 3) if days else 0.0,
        "mean_delay_s": round(float(np.mean(delays)), 1) if delays else None,
        "nab_standard": nab_score(openings, windows),
        "days": round(days, 5),
    }
