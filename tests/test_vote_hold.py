"""Held votes (webapp.detection.hold): a window model that voted on the previous reading keeps
its vote while its score stays above its hold level, so detectors that see one fault a reading
apart still make a quorum; a held vote never makes a critical verdict alone, never outlives
its excursion, and only the autoencoder and the LSTM hold."""
from __future__ import annotations

import json

import numpy as np

from webapp.config import Settings
from webapp.detection import build_panel
from webapp.detection.base import Detector
from webapp.detection.base import Window
from webapp.detection.context import ContextDetector
from webapp.detection.drift import DriftFollower
from webapp.detection.hold import HOLD
from webapp.detection.hold import HOLDS
from webapp.detection.hold import hold_level
from webapp.detection.manifest import MANIFEST
from webapp.detection.manifest import resolve_models_dir
from webapp.detection.peaks import RecentPeaks
from webapp.detection.vote import Panel
from webapp.detection.vote import Voter


class Scripted(Detector):
    """Scores each reading by a script: the score for the reading whose value is i is script[i]."""

    def __init__(self, name: str, script: list[float]):
        self.name, self.script = name, script

    def score_one(self, window: Window) -> float:
        return self.script[int(window.values[-1])]


def run(panel: Panel, readings: int) -> list:
    """Judge readings 0, 1, … in turn, the peaks (and the voted set) carried between them."""
    decisions, peaks = [], None
    for i in range(readings):
        decision = panel.judge(Window((float(i),), (i * 1000,)), peaks=peaks)
        peaks = panel.remember(peaks, decision, i * 1000)
        decisions.append(decision)
    return decisions


def staggered_panel(hold: bool) -> Panel:
    """Three detectors that see one fault a reading apart: the autoencoder crosses its threshold
    on reading 1 and dips just below it on reading 2, when the seasonal detector crosses its
    own; the LSTM votes on both (thresholds 1.0, medians 0.2: hold level 0.6). Reading 1's two
    votes confirm a quorum on reading 2 (`webapp.detection.confirm`)."""
    scripts = {"autoencoder": [0.2, 1.5, 0.9, 0.3], "lstm": [0.2, 1.2, 1.4, 0.3], "seasonal": [0.2, 0.3, 1.3, 0.2]}
    return Panel([Voter(Scripted(name, script), 1.0, hold_level(name, 1.0, 0.2) if hold else None)
                  for name, script in scripts.items()], required=3)


def test_detectors_a_reading_apart_make_a_quorum_only_with_the_hold():
    without = run(staggered_panel(hold=False), 4)
    held = run(staggered_panel(hold=True), 4)
    assert [d.verdict for d in without] == ["normal", "warning", "warning", "normal"]
    assert [d.verdict for d in held] == ["normal", "warning", "critical", "normal"]
    ballots = {b.detector: b for b in held[2].ballots}
    assert ballots["autoencoder"].vote and ballots["autoencoder"].held and not ballots["lstm"].held
    assert held[2].as_dict()["votes"]["autoencoder"]["held"] is True
    assert "held" not in held[2].as_dict()["votes"]["lstm"]


def test_a_vote_is_held_only_above_the_hold_level_and_only_after_a_vote():
    voter = Voter(Scripted("lstm", [0.59, 0.61, 1.2]), 1.0, hold=hold_level("lstm", 1.0, 0.2))
    assert voter.hold == 0.2 + HOLD * 0.8
    below, above, fresh = (voter.ballot(Window((float(i),), (0,)), held=True) for i in range(3))
    assert below.vote is False and above.vote is True and above.held
    assert fresh.vote is True and not fresh.held  # above its threshold: a vote of its own
    assert voter.ballot(Window((1.0,), (0,)), held=False).vote is False  # nothing to hold


def test_only_the_window_models_hold():
    assert HOLDS == {"autoencoder", "lstm"}
    for name in ("physical", "isolation_forest", "context", "seasonal"):
        assert hold_level(name, 1.0, 0.2) is None
    forest = Voter(Scripted("isolation_forest", [0.9]), 1.0, hold=None)
    assert forest.ballot(Window((0.0,), (0,)), held=True).vote is False


def test_held_votes_alone_make_a_warning_not_a_critical_verdict():
    """Both window models vote on reading 2 (2 of 2 needed; the autoencoder's vote on reading 1
    confirms the quorum), then dip into their deadbands: a quorum of held votes, but nobody
    above a threshold now."""
    scripts = {"autoencoder": [0.2, 1.5, 1.5, 0.8, 0.8], "lstm": [0.2, 0.3, 1.5, 0.8, 0.8]}
    panel = Panel([Voter(Scripted(n, script), 1.0, hold_level(n, 1.0, 0.2)) for n, script in scripts.items()],
                  required=2)
    decisions = run(panel, 5)
    assert [d.verdict for d in decisions] == ["normal", "warning", "critical", "warning", "warning"]
    assert decisions[3].votes == 2 and decisions[3].agreed  # still part of the fault: teaches nothing
    assert not decisions[3].unconfirmed


def test_no_vote_is_held_past_the_end_of_an_excursion():
    """A spike of +5, then calm readings. Two window detectors score the spike for as long as it
    is in their window, fading as it ages: above their threshold for eight readings, then in
    their deadband. The excursion ended three readings after the spike, so by then no vote is
    held: once the scores fall below the thresholds, the verdict is normal, not a warning."""
    values = 20.0 + np.random.default_rng(3).normal(0.0, 0.1, 320)
    values[300] = 25.0
    context = ContextDetector(context=288, min_context=30).fit(np.full((5, 10), 20.0) + np.arange(10) * 0.1)

    class Fading(Detector):
        def __init__(self, name: str):
            self.name = name

        def score_one(self, window: Window) -> float:
            ages = np.flatnonzero(np.abs(window.array[-10:][::-1] - 20.0) > 2.0)
            return 0.0 if not ages.size else 6.0 * 0.8 ** int(ages[0])  # 1.007 at age 8, 0.805 at 9

    voters = [Voter(Fading(n), 1.0, hold_level(n, 1.0, 0.0)) for n in ("autoencoder", "lstm")]
    panel = Panel(voters + [Voter(context, 6.0, hold_level("context", 6.0, 0.5))], required=2,
                  follower=DriftFollower(20.0, tau=0, window=10))
    stamps = np.arange(len(values)) * 1000
    peaks, decisions = None, []
    for end in range(300, 312):
        lo = end + 1 - 291
        decision = panel.judge(Window(tuple(values[lo:end + 1]), tuple(stamps[lo:end + 1])), peaks=peaks)
        peaks = panel.remember(peaks, decision, int(stamps[end]))
        decisions.append(decision)
    assert decisions[0].verdict == "critical"
    assert [d.excursion_ended for d in decisions[:9]] == [False] * 3 + [True] * 6  # ages 3..8
    aged = decisions[9]  # the spike nine readings back: scores 0.805, above their hold level 0.5
    assert [b.score > b.threshold for b in aged.ballots[:2]] == [False, False]
    assert aged.verdict == "normal" and aged.votes == 0  # held past the excursion, it would be a warning


def test_the_voted_set_survives_the_redis_hash():
    peaks = RecentPeaks(span=8).after({"lstm": 1.0}, {"lstm": True}, critical=True, now=0,
                                      voted=frozenset({"lstm", "context"}))
    assert peaks.voted == {"lstm", "context"}  # kept even when the reading was critical
    assert RecentPeaks.from_fields(peaks.as_fields(), span=8).voted == {"lstm", "context"}
    assert RecentPeaks.from_fields({"voted": ""}, span=8).voted == frozenset()


def test_build_panel_sets_hold_levels_from_the_manifests_medians():
    """The committed manifest's medians give the autoencoder and the LSTM their hold levels."""
    panel = build_panel(Settings().replace(inference_backend="inprocess"))
    models = json.loads((resolve_models_dir(Settings().inference.models_dir) / MANIFEST).read_text())["models"]
    for voter in panel.voters:
        entry = models.get(voter.name)
        if voter.name not in HOLDS:
            assert voter.hold is None
        else:
            median = entry["calibration"]["median_score"]
            assert voter.hold == median + HOLD * (voter.threshold - median)
            assert median < voter.hold < voter.threshold
    assert {voter.name for voter in panel.voters if voter.hold is not None} == HOLDS


def test_a_held_vote_carries_between_requests_through_redis(redis_client, settings):
    """/detectar's path: which detectors voted is written with the decision and read back with
    the next window, so the next request (on any worker) holds the vote."""
    from webapp.judging import judge_newest
    from webapp.storage import Store

    store = Store(redis_client, settings)
    panel = staggered_panel(hold=True)
    verdicts = []
    for i in range(4):
        store.append_reading("held", 1_700_000_000_000 + i * 1000, float(i))
        _, decision = judge_newest(store, panel, "held", 1_700_000_000_000 + i * 1000, 1)
        verdicts.append(decision.verdict)
        if i == 1:
            assert redis_client.hget(store.keys.series("held", "peaks"), "voted") in (b"autoencoder,lstm",
                                                                                      "autoencoder,lstm")
    assert verdicts == ["normal", "warning", "critical", "normal"]
