"""The context detector: the newest readings against a robust summary of a longer past.

The learned detectors see ten readings; this one sees the last `context` readings before the
newest few (288 by default: a day at 5-minute steps, about five minutes at 1 Hz). It asks how
far the mean of the newest `tail` readings lies from the median of that context, in units of
the context's median absolute deviation (Skyline's median-absolute-deviation test, with the
tail average of its "stddev from average"). It needs no model, is the same at any level (a
slow drift moves the median with it), and costs one median over the context per window.

It brings what the window detectors lack: what is usual for *this* sensor lately, not what
was usual in the baseline it was fitted on. Averaging the newest three readings makes one
noisy reading count less, and once three readings are back in range it is quiet again, so its
vote ends with the excursion.
"""
from __future__ import annotations

import numpy as np

from webapp.detection.base import Detector
from webapp.detection.base import DetectorUnavailable
from webapp.detection.base import Window
from webapp.detection.features import Profile

MAD_TO_STD = 1.4826  # a normal distribution's standard deviation per median absolute deviation


def robust_deviation(values: np.ndarray, tail: int, context: int, floor: float) -> float:
    """|mean of the newest `tail` readings − median of up to `context` before them| / robust spread.

    The spread is the median absolute deviation scaled to a standard deviation, floored at
    `floor` (flat or quantised series have none).

    >>> round(robust_deviation(np.array([1.0, 3.0, 1.0, 3.0, 2.0, 9.0]), tail=1, context=5, floor=0.1), 3)
    4.721
    """
    median, spread = robust_center(values[:-tail][-context:], floor)
    return abs(float(values[-tail:].mean()) - median) / spread


def robust_center(ref: np.ndarray, floor: float) -> tuple[float, float]:
    """The median of `ref` and its spread: the median absolute deviation scaled to a standard
    deviation, at least `floor`.

    >>> robust_center(np.array([1.0, 2.0, 3.0]), floor=0.1)
    (2.0, 1.4826)
    """
    median = float(np.median(ref))
    return median, max(MAD_TO_STD * float(np.median(np.abs(ref - median))), floor)


class ContextDetector(Detector):
    """The newest readings' robust deviation from the sensor's recent context.

    The score is `robust_deviation`: about 1 for ordinary readings, growing with how unusual
    the newest `tail` readings are against the median of the `context` readings before them.
    It catches spikes, steps and bursts against the sensor's own recent behaviour, at any
    level; it fails on faults slower than the context (a drift over days at 5-minute steps
    moves the median with it) and on a stuck sensor (no deviation at all).

    Parameters
    ----------
    context
        Readings before the tail that form the reference (fewer are used while the sensor is
        young, down to `min_context`; below that the detector abstains).
    tail
        Newest readings averaged into the judged value.
    min_context
        Fewest reference readings it judges with.
    floor
        Smallest spread, as a fraction of the sensor profile's scale (fitted on normal data).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> normal = 20 + rng.normal(0, 0.1, (50, 40))
    >>> detector = ContextDetector(context=36, min_context=20).fit(normal)
    >>> calm = Window(tuple(normal[0]), tuple(range(40)))
    >>> step = Window(tuple(normal[0][:-3]) + (21.0, 21.0, 21.0), tuple(range(40)))
    >>> detector.score_one(calm) < 3 < detector.score_one(step)
    True
    """

    name = "context"
    absolute = True  # it judges against its own context: the reference level changes nothing

    def __init__(self, context: int = 288, tail: int = 3, min_context: int = 30, floor: float = 0.05):
        self.context = context
        self.tail = tail
        self.min_context = min_context
        self.floor = floor

    @classmethod
    def _unit_test_params(cls) -> dict:
        return {"context": 7, "tail": 3, "min_context": 6, "floor": 0.05}

    def params(self) -> dict:
        """The parameters, as the manifest keeps them."""
        return {"context": self.context, "tail": self.tail, "min_context": self.min_context, "floor": self.floor}

    @property
    def readings(self) -> int:
        """Readings a window needs for the full context (the panel reads this many)."""
        return self.context + self.tail

    def fit(self, windows: np.ndarray) -> ContextDetector:
        """Learn the sensor profile (its scale floors the spread) from normal windows."""
        rows = np.atleast_2d(np.asarray(windows, dtype=np.float64))
        self.profile_ = Profile.fit(rows[:, -1])
        return self

    def score_one(self, window: Window) -> float:
        values = window.array[-self.readings:]
        if len(values) < self.min_context + self.tail:
            raise DetectorUnavailable(f"needs {self.min_context + self.tail} readings, has {len(values)}")
        return robust_deviation(values, self.tail, self.context, self.floor * self.profile_.scale)

    def deviations(self, window: Window, last: int) -> np.ndarray | None:
        """Each of the newest `last` readings' robust deviation from the median of the context
        before them (None while that context is shorter than `min_context`): the yardstick of
        `webapp.detection.excursion`.

        >>> detector = ContextDetector(context=6, min_context=4).fit(np.array([[0.0, 1.0, 2.0]]))
        >>> detector.deviations(Window((1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 9.0, 1.5), tuple(range(8))), 2).round(2).tolist()
        [10.12, 0.0]
        """
        values = window.array[-(self.context + last):]
        if len(values) < self.min_context + last:
            return None
        median, spread = robust_center(values[:-last], self.floor * self.profile_.scale)
        return np.abs(values[-last:] - median) / spread

    def score_series(self, values: np.ndarray) -> np.ndarray:
        """The score of every reading of a series judged with the readings before it (NaN while
        the context is shorter than `min_context`); the same numbers as `score_one`."""
        values = np.asarray(values, dtype=np.float64)
        out = np.full(len(values), np.nan)
        for i in range(self.min_context + self.tail - 1, len(values)):
            start = max(0, i + 1 - self.readings)
            out[i] = robust_deviation(values[start:i + 1], self.tail, self.context, self.floor * self.profile_.scale)
        return out

    @property
    def version(self) -> str:
        return str(getattr(self, "version_", "rule"))
