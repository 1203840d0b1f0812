"""The contract every detector follows (river's shape), and the window it scores.

A detector is fitted on normal data and scores a window of raw readings in physical units;
a higher score means more anomalous. Detectors score, they never decide: a `Voter` pairs a
detector with its calibrated threshold, and `vote.decide` combines the ballots.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Window:
    """The readings a verdict is about, oldest first, the newest being the one judged.

    Parameters
    ----------
    values
        Raw readings in physical units.
    timestamps
        Milliseconds since the Unix epoch, strictly increasing, one per value.
    sensor
        The sensor (or edge group) the readings belong to.
    """

    values: tuple[float, ...]
    timestamps: tuple[int, ...]
    sensor: str = "default"

    def __post_init__(self) -> None:
        if len(self.values) != len(self.timestamps):
            raise ValueError("values and timestamps must have the same length")
        if not self.values:
            raise ValueError("a window holds at least one reading")

    @property
    def array(self) -> np.ndarray:
        """The values as a float64 array."""
        return np.asarray(self.values, dtype=np.float64)


class DetectorUnavailable(Exception):
    """Raised by a detector that cannot answer now; its voter abstains."""


class Detector:
    """Base class of all detectors.

    Subclasses set `name`, store their parameters verbatim in ``__init__``, build state in
    `fit`, and implement `score_one`. `score` maps `score_one` over rows unless a subclass has
    a faster batch path.
    """

    name: str = "detector"
    #: True for detectors that judge raw values against absolute limits; the others judge
    #: the window moved to the sensor's reference level (`webapp.detection.drift`).
    absolute: bool = False

    def fit(self, windows: np.ndarray) -> Detector:
        """Learn from normal windows, one per row (raw physical units). Returns self."""
        return self

    def score_one(self, window: Window) -> float:
        """The anomaly score of one window: higher is more anomalous. Pure."""
        raise NotImplementedError

    def score(self, windows: np.ndarray, period_ms: int = 1000) -> np.ndarray:
        """Scores of many windows, one per row, spaced `period_ms` apart."""
        rows = np.atleast_2d(np.asarray(windows, dtype=np.float64))
        stamps = tuple(range(0, rows.shape[1] * period_ms, period_ms))
        return np.array([self.score_one(Window(tuple(row), stamps)) for row in rows])

    @property
    def version(self) -> str:
        """The version of the model behind the scores ("rule" for fixed rules)."""
        return "rule"


def as_windows(values: Sequence[float], size: int) -> np.ndarray:
    """Every complete sliding window of `size` readings of a series, one per row.

    >>> as_windows([1, 2, 3, 4], 3).tolist()
    [[1.0, 2.0, 3.0], [2.0, 3.0, 4.0]]
    """
    series = np.asarray(values, dtype=np.float64)
    if size < 1 or size > len(series):
        raise ValueError(f"size must be in [1, {len(series)}], got {size}")
    return np.lib.stride_tricks.sliding_window_view(series, size).copy()
