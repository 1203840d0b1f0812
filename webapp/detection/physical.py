"""The physical rule: plausible range, maximum rate of change and a stuck-sensor check.

Deterministic and model-free, it is the one detector that needs no training and never
abstains, so it keeps voting while every learned model is down.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from webapp.config import PhysicalLimits
from webapp.detection.base import Detector
from webapp.detection.base import Window

THRESHOLD = 1.0


class PhysicalRule(Detector):
    """Scores how far a window breaks its sensor's physical limits; above 1.0 is a breach.

    The score is the largest of: the newest reading's distance outside ``[low, high]``
    (1 plus the excess as a fraction of the range, 0 inside it), the newest reading's change
    per second from the level before it (the median of up to three previous readings, so
    the return from a spike is not a second breach) divided by ``max_rate``, and 2.0 when
    the last ``stuck_count`` readings are identical. Only the newest reading is judged: a
    verdict describes one reading. It works for any sensor with known limits; it cannot see
    anomalies that stay inside them (that is what the learned detectors are for).

    Parameters
    ----------
    limits_for
        Returns the `PhysicalLimits` of a sensor id.

    Examples
    --------
    >>> from webapp.config import PhysicalLimits
    >>> rule = PhysicalRule(lambda sensor: PhysicalLimits(low=0, high=100, max_rate=2))
    >>> calm = Window((20.0, 20.5, 21.0), (0, 1000, 2000))
    >>> spike = Window((20.0, 20.5, 90.0), (0, 1000, 2000))
    >>> rule.score_one(calm) < THRESHOLD < rule.score_one(spike)
    True
    """

    name = "physical"
    fixed_threshold = THRESHOLD
    absolute = True

    def __init__(self, limits_for: Callable[[str], PhysicalLimits]):
        self.limits_for = limits_for

    @classmethod
    def _unit_test_params(cls) -> dict:
        """Parameters of the contract suite: limits of a 20 °C sensor sampled every second."""
        from webapp.config import Settings

        limits = PhysicalLimits(low=5.0, high=35.0, max_rate=2.0, stuck_count=10)
        return {"limits_for": Settings().replace(physical=limits).detection.limits_for}

    def score_one(self, window: Window) -> float:
        limits = self.limits_for(window.sensor)
        values = window.array
        newest = values[-1]
        span = limits.high - limits.low
        if newest < limits.low:
            range_score = 1.0 + (limits.low - newest) / span
        elif newest > limits.high:
            range_score = 1.0 + (newest - limits.high) / span
        else:
            range_score = 0.0
        rate_score = 0.0
        if len(values) > 1:
            level = float(np.median(values[-4:-1]))
            seconds = max((window.timestamps[-1] - window.timestamps[-2]) / 1000.0, limits.min_interval_s)
            rate_score = abs(newest - level) / seconds / limits.max_rate
        stuck_score = 0.0
        n = limits.stuck_count
        if n and len(values) >= n and np.ptp(values[-n:]) == 0.0:
            stuck_score = 2.0
        return float(max(range_score, rate_score, stuck_score))
