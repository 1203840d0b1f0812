"""Verdicts end with the fault (webapp.detection.excursion): three readings after an excursion
leaves the window detectors' window, a critical verdict becomes a warning, while a fault the
newest readings still carry stays critical."""
from __future__ import annotations

import numpy as np

from webapp.detection.base import Detector
from webapp.detection.base import Window
from webapp.detection.context import ContextDetector
from webapp.detection.drift import DriftFollower
from webapp.detection.vote import Panel
from webapp.detection.vote import Voter

W = 10


class WindowPeak(Detector):
    """A window detector: scores the window by its largest distance from 20, so a spike keeps
    its vote for as long as it stays among the newest `W` readings (as the forest's range,
    the autoencoder's error and the LSTM's largest step do)."""

    def __init__(self, name: str):
        self.name = name

    def score_one(self, window: Window) -> float:
        return float(np.abs(window.array[-W:] - 20.0).max())


def panel_and_readings(values: np.ndarray):
    context = ContextDetector(context=288, min_context=30).fit(np.full((5, 10), 20.0) + np.arange(10) * 0.1)
    voters = [Voter(WindowPeak("isolation_forest"), 1.0), Voter(WindowPeak("autoencoder"), 1.0),
              Voter(WindowPeak("lstm"), 1.0), Voter(context, 6.0)]
    panel = Panel(voters, required=3, follower=DriftFollower(20.0, tau=0, window=W))
    stamps = np.arange(len(values)) * 1000
    return panel, values, stamps


def judge_all(values: np.ndarray, start: int):
    panel, values, stamps = panel_and_readings(values)
    out = []
    for end in range(start, len(values)):
        lo = max(0, end + 1 - 291)
        out.append(panel.judge(Window(tuple(values[lo:end + 1]), tuple(stamps[lo:end + 1]))))
    return out


def calm(n: int, seed: int = 0) -> np.ndarray:
    return 20.0 + np.random.default_rng(seed).normal(0.0, 0.1, n)


def test_a_spike_stays_critical_for_three_readings_then_the_verdict_is_a_warning():
    values = calm(320)
    values[300] = 25.0  # a 3-second spike of +5
    decisions = judge_all(values, 300)
    verdicts = [d.verdict for d in decisions[:W + 2]]
    assert verdicts[:3] == ["critical"] * 3  # the spike and the two readings after it
    assert verdicts[3:W] == ["warning"] * (W - 3)  # back in the band for three readings: the fault is over
    assert all(d.excursion_ended and d.agreed for d in decisions[3:W])
    assert decisions[3].as_dict()["excursion_ended"] is True and decisions[0].as_dict()["excursion_ended"] is False
    assert verdicts[W:] == ["normal"] * 2  # the spike has left the window: nobody votes


def test_a_reading_whose_excursion_ended_teaches_the_level_and_the_peaks_nothing():
    values = calm(320)
    values[300] = 25.0
    panel, values, stamps = panel_and_readings(values)
    window = Window(tuple(values[13:304]), tuple(stamps[13:304]))  # the spike three readings back
    decision = panel.judge(window, level=20.0)
    assert decision.verdict == "warning" and decision.excursion_ended
    assert panel.follow(20.0, window, decision) == 20.0  # tau 0 would jump to the mean if it learned
    assert panel.remember(None, decision, int(stamps[303])).bar("lstm") is None


def test_a_step_the_newest_readings_still_carry_stays_critical():
    values = calm(330)
    values[300:] += 4.0  # the level jumps and stays
    verdicts = [d.verdict for d in judge_all(values, 300)]
    assert verdicts[:W + 5] == ["critical"] * (W + 5)


def test_without_enough_context_the_verdict_is_left_as_the_vote_gives_it():
    values = calm(40)
    values[20] = 25.0
    verdicts = [d.verdict for d in judge_all(values, 20)[:W]]
    assert verdicts == ["critical"] * W  # 20 readings of context: too short to judge the band
