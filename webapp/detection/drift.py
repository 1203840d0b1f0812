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

from dataclasses import dataclass

from webapp.detection.base import Window


@dataclass(frozen=True)
class DriftFollower:
    """How a sensor's reference level follows its readings.

    Parameters
    ----------
    center
        The level the learned models were fitted around (the manifest's profile centre).
    tau
        Time constant in readings; 0 turns following off (the level stays at `center`).

    Examples
    --------
    >>> follower = DriftFollower(center=20.0, tau=4)
    >>> follower.follow(None, Window((22.0, 22.0), (0, 1000)), critical=False)
    20.5
    >>> follower.follow(20.5, Window((30.0, 30.0), (0, 1000)), critical=True)
    20.5
    >>> follower.move(Window((22.0, 23.0), (0, 1000)), level=20.5).values
    (21.5, 22.5)
    """

    center: float
    tau: float = 200.0

    def __post_init__(self) -> None:
        if self.tau < 0:
            raise ValueError("tau must be 0 (off) or a positive number of readings")

    def follow(self, level: float | None, window: Window, critical: bool) -> float:
        """The reference level after judging `window`: unchanged when it was critical."""
        current = self.center if level is None else level
        if critical or not self.tau:
            return current
        return current + (float(window.array.mean()) - current) / max(self.tau, 1.0)

    def move(self, window: Window, level: float | None) -> Window:
        """`window` as the models see it: shifted so that `level` sits at their centre."""
        if level is None or level == self.center:
            return window
        shift = self.center - level
        return Window(tuple(v + shift for v in window.values), window.timestamps, window.sensor)
