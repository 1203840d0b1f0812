"""Following slow drift: the learned detectors judge each window moved to the sensor's
reference level, which follows the readings not judged critical (webapp.detection.drift)."""
from __future__ import annotations

import numpy as np
import pytest

from edge.simulator import Fault
from edge.simulator import TemperatureSimulator
from webapp.config import Settings
from webapp.detection import build_panel
from webapp.detection.base import Detector
from webapp.detection.base import Window
from webapp.detection.drift import DriftFollower
from webapp.detection.vote import Panel
from webapp.detection.vote import Voter

W = 10
STAMPS = tuple(range(0, W * 1000, 1000))


class Newest(Detector):
    """Scores a window by its newest value, and remembers every window it was shown."""

    def __init__(self, name: str, absolute: bool = False):
        self.name, self.absolute, self.seen = name, absolute, []

    def score_one(self, window: Window) -> float:
        self.seen.append(window.values)
        return window.values[-1]


def test_learned_detectors_see_the_moved_window_and_the_physical_rule_the_raw_one():
    raw, learned = Newest("physical", absolute=True), Newest("autoencoder")
    panel = Panel([Voter(raw, 100.0), Voter(learned, 100.0)], required=2, follower=DriftFollower(20.0, tau=10))
    window = Window((25.0, 26.0), (0, 1000))
    decision = panel.judge(window, level=24.0)
    assert raw.seen == [(25.0, 26.0)] and learned.seen == [(21.0, 22.0)]
    assert decision.reference == 24.0 and decision.as_dict()["reference_level"] == 24.0
    assert panel.follow(24.0, window, decision) == pytest.approx(24.0 + (25.5 - 24.0) / 10)
    first = panel.judge(window)  # a sensor's first window: the level starts at the models' centre
    assert learned.seen[-1] == (25.0, 26.0) and first.reference == 20.0


def test_the_level_stops_while_the_verdict_is_critical():
    panel = Panel([Voter(Newest("autoencoder"), 1.0)], required=1, follower=DriftFollower(0.0, tau=2))
    window = Window((5.0, 5.0), (0, 1000))
    decision = panel.judge(window, level=0.0)
    assert decision.verdict == "critical" and panel.follow(0.0, window, decision) == 0.0
    assert Panel([], required=1).follow(3.0, window, decision) is None  # no learned model: nothing to follow


def test_follower_rejects_a_negative_time_constant_and_can_be_off():
    with pytest.raises(ValueError, match="tau"):
        DriftFollower(0.0, tau=-1)
    assert DriftFollower(20.0, tau=0).follow(21.0, Window((30.0,), (0,)), critical=False) == 21.0
    with pytest.raises(ValueError, match="drift_tau"):
        Settings(drift_tau=0.5)


def replay(panel, values: np.ndarray, follow: bool) -> np.ndarray:
    """Each reading's verdict, judged like /detectar does (window ending at it)."""
    verdicts, level = [], None
    for end in range(W, len(values) + 1):
        window = Window(tuple(values[end - W:end]), STAMPS)
        decision = panel.judge(window, level)
        if follow:
            level = panel.follow(level, window, decision)
        verdicts.append(decision.verdict)
    return np.array(verdicts)


def test_a_slow_warming_is_followed_and_a_fast_drift_still_raises_critical():
    """The committed models, trained on the simulator around 20 °C: a process warming by 4 °C
    over an hour draws votes through much of its last quarter without following and almost
    none with it, while a 3 °C drift over 10 minutes (the simulator's drift fault) still goes
    critical, and nothing before it does."""
    panel = build_panel(Settings(inference_backend="inprocess"))
    assert panel.follower is not None and panel.follower.tau == Settings().drift_tau
    warming = TemperatureSimulator(seed=21).series(3600)[1] + np.linspace(0.0, 4.0, 3600)
    still = replay(panel, warming, follow=False)
    followed = replay(panel, warming, follow=True)
    assert (still[-900:] != "normal").mean() > 0.2  # measured 0.32
    assert (followed != "normal").mean() < 0.02  # measured 0.004
    fault = Fault("drift", 1200, 600, 3.0)
    drifting = TemperatureSimulator(seed=22, faults=[fault]).series(2400)[1]
    verdicts = replay(panel, drifting, follow=True)
    assert (verdicts[1200 - W + 1:1800 + W - 1] == "critical").any()
    assert (verdicts[:1200 - W] == "critical").mean() < 0.01
