"""The seasonal detector: today's readings against the same time yesterday.

Many plant signals follow a daily cycle (shifts, ambient temperature, load). A cycle that does
not come, comes early or flattens stays inside the sensor's usual range, where every other
detector is blind: the window detectors see ten ordinary readings, the context detector an
ordinary level. This detector pairs each reading with the reading nearest one `lag_s` (a day)
before it, and applies the context detector's robust test to those day-over-day differences:
the mean of the newest `tail` differences against the median of the `context` differences
before them, in robust standard deviations. A normal day repeats yesterday up to a slowly
moving offset, so the differences are flat; a missing or shifted cycle makes them jump.

The lag is a time, not a count of readings: a reading is paired with the one nearest
``t - lag_s`` (within one sampling step of the window), so a 5-minute and an irregular series
mean the same thing. It is model-free, calibrated on the training readings with their times
(`offline.rules`), and seated only where it can be calibrated: two days of training readings,
and a day plus its context within `MAX_READINGS` (the most one judgement reads). At 1 Hz a day
is 86,400 readings, so 1 Hz sensors are judged without it (docs/detection.md).
"""
from __future__ import annotations

import math

import numpy as np

from webapp.detection.base import Detector
from webapp.detection.base import DetectorUnavailable
from webapp.detection.base import Window
from webapp.detection.context import robust_deviation
from webapp.detection.features import Profile

DAY_S = 86_400
MAX_READINGS = 600  # the most readings one judgement reads (one TS.REVRANGE ... COUNT)


def day_over_day(values: np.ndarray, times_ms: np.ndarray, lag_ms: int) -> np.ndarray:
    """Each reading minus the reading nearest `lag_ms` before it; NaN where none lies closer
    than one sampling step (the median step of `times_ms`) to that instant.

    >>> day_over_day(np.array([1.0, 2.0, 3.0, 5.0]), np.array([0, 10, 20, 30]), 20).tolist()
    [nan, nan, 2.0, 3.0]
    >>> day_over_day(np.array([1.0, 2.0, 3.0, 5.0]), np.array([0, 10, 20, 60]), 20).tolist()  # none near 40
    [nan, nan, 2.0, nan]
    """
    times_ms = np.asarray(times_ms, dtype=np.int64)
    out = np.full(len(values), np.nan)
    if len(times_ms) < 2:
        return out
    step = float(np.median(np.diff(times_ms)))
    target = times_ms - lag_ms
    right = np.clip(np.searchsorted(times_ms, target), 0, len(times_ms) - 1)
    left = np.clip(right - 1, 0, len(times_ms) - 1)
    nearest = np.where(np.abs(times_ms[left] - target) <= np.abs(times_ms[right] - target), left, right)
    paired = (np.abs(times_ms[nearest] - target) < step) & (nearest < np.arange(len(times_ms)))
    out[paired] = values[paired] - values[nearest[paired]]
    return out


class SeasonalDetector(Detector):
    """The newest day-over-day differences' robust deviation from the recent ones.

    The score is about 1 on ordinary days and grows as today departs from yesterday more than
    it lately has. It catches a daily cycle that is missing, shifted or flattened, and a level
    change that yesterday did not have; it fails on faults that repeat daily, on a sensor's
    first day (it abstains: there is no yesterday) and on faults slower than its context.

    Parameters
    ----------
    period_s
        The sensor's sampling period, measured at calibration: sets how many readings a day is.
    lag_s
        How far back the paired reading lies (a day).
    context, tail, min_context, floor
        As for `webapp.detection.context.ContextDetector`, applied to the differences.

    Examples
    --------
    >>> t = np.arange(0, 3 * 86_400, 3_600)  # three days, hourly, a daily cycle
    >>> v = 20 + np.sin(2 * np.pi * t / 86_400)
    >>> d = SeasonalDetector(period_s=3_600, context=20, min_context=10).fit_series(v)
    >>> calm = Window(tuple(v), tuple(int(x) for x in t * 1000))
    >>> flat = Window(tuple(v[:-3]) + (20.0, 20.0, 20.0), calm.timestamps)  # the cycle stops
    >>> d.score_one(calm) < 3 < d.score_one(flat)
    True
    """

    name = "seasonal"
    absolute = True  # it judges against its own history: the reference level changes nothing

    def __init__(self, period_s: float, lag_s: float = DAY_S, context: int = 288, tail: int = 3,
                 min_context: int = 30, floor: float = 0.05):
        self.period_s = period_s
        self.lag_s = lag_s
        self.context = context
        self.tail = tail
        self.min_context = min_context
        self.floor = floor

    def params(self) -> dict:
        """The parameters, as the manifest keeps them."""
        return {"period_s": self.period_s, "lag_s": self.lag_s, "context": self.context, "tail": self.tail,
                "min_context": self.min_context, "floor": self.floor}

    @property
    def readings(self) -> int:
        """Readings a window needs: a day (with 2 % of slack for irregular steps), then the context."""
        return math.ceil(1.02 * self.lag_s / self.period_s) + self.context + self.tail

    def fit_series(self, values: np.ndarray) -> SeasonalDetector:
        """Learn the sensor profile (its scale floors the spread) from normal readings."""
        self.profile_ = Profile.fit(np.asarray(values, dtype=np.float64))
        return self

    def fit(self, windows: np.ndarray) -> SeasonalDetector:
        return self.fit_series(np.atleast_2d(np.asarray(windows, dtype=np.float64))[:, -1])

    def score_one(self, window: Window) -> float:
        values = window.array[-self.readings:]
        times = np.asarray(window.timestamps[-self.readings:], dtype=np.int64)
        return self._deviation(values, times)

    def _deviation(self, values: np.ndarray, times: np.ndarray) -> float:
        diffs = day_over_day(values, times, int(self.lag_s * 1000))
        if np.isnan(diffs[-self.tail:]).any():
            raise DetectorUnavailable("no reading a day before the newest ones")
        diffs = diffs[np.isfinite(diffs)][-(self.context + self.tail):]
        if len(diffs) < self.min_context + self.tail:
            raise DetectorUnavailable(f"needs {self.min_context + self.tail} readings with one a day before, "
                                      f"has {len(diffs)}")
        return robust_deviation(diffs, self.tail, self.context, self.floor * self.profile_.scale)

    def score_series(self, values: np.ndarray, times_ms: np.ndarray) -> np.ndarray:
        """The score of every reading of a series judged with the readings before it (NaN where
        it would abstain); the same numbers as `score_one`."""
        values = np.asarray(values, dtype=np.float64)
        times_ms = np.asarray(times_ms, dtype=np.int64)
        out = np.full(len(values), np.nan)
        for i in range(len(values)):
            start = max(0, i + 1 - self.readings)
            try:
                out[i] = self._deviation(values[start:i + 1], times_ms[start:i + 1])
            except DetectorUnavailable:
                continue
        return out

    @property
    def version(self) -> str:
        return str(getattr(self, "version_", "rule"))
