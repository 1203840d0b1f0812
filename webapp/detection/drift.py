"""Following a sensor's slow drift with the readings judged normal.

The learned detectors were fitted around one level, the centre of the sensor profile in the
manifest. A process that warms or cools slowly over hours (SKAB's test rig) leaves that level
behind, and every level-aware model then calls every window anomalous. So each sensor keeps a
*reference level*: an exponentially weighted mean of its windows with a time constant of
`tau` readings, moved only by readings whose verdict was not critical, so a developing fault
never teaches the models that it is normal. The learned detectors judge the window moved by
``centre - level``; the physical rule keeps judging raw values against absolute limits.

A fault that arrives faster than the level follows (a spike, a step, a drift of degrees in
minutes) still reaches the models almost whole, and once three of them agree the level stops.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from webapp.detection.base import Window


@dataclass(frozen=True)
class DriftFollower:
    """How a sensor's reference level follows its readings.

    Parameters
    ----------
    center
        The level the learned models were fitted around (the manifest's profile centre).
    tau
        Time constant in sampling periods of the sensor (measured on the window: its median
        step); 0 turns following off (the level stays at `center`). A reading arriving after
        a gap moves the level as far as the readings missed in it would have.
    window
        Newest readings whose mean the level follows (the learned detectors' window; a
        longer context in the window is not averaged in).

    Examples
    --------
    >>> follower = DriftFollower(center=20.0, tau=4)
    >>> round(follower.follow(None, Window((22.0, 22.0), (0, 1000)), critical=False), 3)
    20.442
    >>> follower.follow(20.5, Window((30.0, 30.0), (0, 1000)), critical=True)
    20.5
    >>> follower.move(Window((22.0, 23.0), (0, 1000)), level=20.5).values
    (21.5, 22.5)
    """

    center: float
    tau: float = 200.0
    window: int = 10

    def __post_init__(self) -> None:
        if self.tau < 0:
            raise ValueError("tau must be 0 (off) or a positive number of readings")

    def follow(self, level: float | None, window: Window, critical: bool) -> float:
        """The reference level after judging `window`: unchanged when it was critical."""
        current = self.center if level is None else level
        if critical or not self.tau:
            return current
        recent = window.array[-self.window:]
        return current + (float(recent.mean()) - current) * self.weight(window)

    def weight(self, window: Window) -> float:
        """How far one reading moves the level: ``1 - exp(-gap / (tau * period))``, the gap
        before the newest reading over the sensor's sampling period (the window's median step;
        one period when the window has a single reading).

        >>> follower = DriftFollower(center=0.0, tau=100)
        >>> steady = Window((0.0,) * 5, (0, 300_000, 600_000, 900_000, 1_200_000))  # 5-minute steps
        >>> late = Window((0.0,) * 5, (0, 300_000, 600_000, 900_000, 1_800_000))  # the newest 10 minutes late
        >>> round(follower.weight(steady), 4), round(follower.weight(late), 4)
        (0.01, 0.0296)
        """
        steps = np.diff(np.asarray(window.timestamps[-(self.window + 1):], dtype=np.float64))
        period = float(np.median(steps)) if len(steps) else 0.0
        periods = float(steps[-1]) / period if period > 0 else 1.0
        return 1.0 - math.exp(-periods / max(self.tau, 1.0))

    def move(self, window: Window, level: float | None) -> Window:
        """`window` as the models see it: shifted so that `level` sits at their centre."""
        if level is None or level == self.center:
            return window
        shift = self.center - level  # only the newest `window` readings: the models see no more
        return Window(tuple(v + shift for v in window.values[-self.window:]), window.timestamps[-self.window:],
                      window.sensor)
