"""Feature preparation shared by training, export and every inference backend.

A `Profile` (per sensor, kept in the model manifest) standardises raw readings with one fixed
centre and scale learned from normal data, so learned detectors see the level as well as the
shape of a window: a per-window scaling would hide the level excursions most faults are.
"""
from __future__ import annotations

from dataclasses import asdict
from dataclasses import dataclass

import numpy as np

FEATURE_NAMES = ("last", "mean", "std", "last_minus_mean", "max_abs_step", "slope", "range")


@dataclass(frozen=True)
class Profile:
    """How a sensor's raw readings are scaled before a learned model sees them.

    Parameters
    ----------
    center, scale
        ``(value - center) / scale`` is what models receive; `scale` must be positive.
    """

    center: float = 0.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.center) and np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"profile needs a finite center and a positive scale, got {self}")

    @classmethod
    def fit(cls, values: np.ndarray) -> Profile:
        """The profile of normal readings: their mean, and their standard deviation (floored).

        >>> Profile.fit(np.array([19.0, 21.0])).center
        20.0
        """
        values = np.asarray(values, dtype=np.float64)
        values = values[np.isfinite(values)]
        spread = float(values.std())
        floor = max(1e-3, 1e-3 * abs(float(values.mean())))
        return cls(round(float(values.mean()), 6), round(max(spread, floor), 6))

    def as_dict(self) -> dict:
        return asdict(self)


def prepare(windows: np.ndarray, profile: Profile) -> np.ndarray:
    """Scale raw windows (one per row) for a model: float32 ``(value - center) / scale``.

    >>> prepare(np.array([[20.0, 22.0]]), Profile(20.0, 2.0)).tolist()
    [[0.0, 1.0]]
    """
    rows = np.atleast_2d(np.asarray(windows, dtype=np.float64))
    return ((rows - profile.center) / profile.scale).astype(np.float32)


def window_features(windows: np.ndarray, profile: Profile) -> np.ndarray:
    """Summary features of scaled windows, one row per window (see `FEATURE_NAMES`).

    Level (last value, mean), spread (std, range), the newest reading against the window and
    the steepest step, and the least-squares slope: a spike, a step, a drift, a stuck sensor
    and a noise burst each move a different feature.

    >>> f = window_features(np.array([[1.0, 1.0, 4.0]]), Profile())
    >>> dict(zip(FEATURE_NAMES, f[0].round(2).tolist()))["max_abs_step"]
    3.0
    """
    x = prepare(windows, profile).astype(np.float64)
    n = x.shape[1]
    t = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    denom = float((t**2).sum()) or 1.0
    mean = x.mean(axis=1)
    steps = np.abs(np.diff(x, axis=1)) if n > 1 else np.zeros((len(x), 1))
    return np.column_stack([
        x[:, -1],
        mean,
        x.std(axis=1),
        x[:, -1] - mean,
        steps.max(axis=1),
        (x * t).sum(axis=1) / denom,
        x.max(axis=1) - x.min(axis=1),
    ])
