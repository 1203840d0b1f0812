"""The seasonal detector: the newest readings against the same time of day on earlier days."""
from __future__ import annotations

import numpy as np

from webapp.detection import build_panel
from webapp.detection.base import Window
from webapp.detection.seasonal import DAY_MS
from webapp.detection.seasonal import SeasonalDetector
from webapp.detection.seasonal import seasons_at
from webapp.detection.vote import Voter

FIVE_MIN = 300_000
START = 1_700_000_000_000 - 1_700_000_000_000 % DAY_MS  # a midnight


def daily(times_ms: np.ndarray, seed: int = 0) -> np.ndarray:
    """A plant's day: 20 °C at night, 30 °C in the afternoon, a little noise."""
    hours = (times_ms % DAY_MS) / 3_600_000
    return 25 - 5 * np.cos(2 * np.pi * hours / 24) + np.random.default_rng(seed).normal(0, 0.2, len(times_ms))


def test_a_reading_usual_for_the_last_hours_but_not_for_this_time_of_day_scores_high():
    """Three days at 5-minute steps; on the fourth afternoon the reading stays at its morning
    level (the daily rise did not come). The last hours cannot tell (the context detector's
    view); the same time on the days before can."""
    times = START + FIVE_MIN * np.arange(3 * 288 + 180)  # into the fourth day: 15:00
    values = daily(times)
    detector = SeasonalDetector().fit(values[:288, None])
    usual = detector.score_series(times, values)[-1]
    flat = values.copy()
    flat[-36:] = values[-37]  # held at its 12:00 level for three hours
    stuck_low = detector.score_series(times, flat)[-1]
    assert usual < 3 < 2 * 3 < stuck_low
    assert np.isnan(detector.score_series(times, values)[:288]).all()  # no earlier day: no score


def test_without_an_earlier_day_it_does_not_vote_and_the_panel_is_not_degraded():
    """A sensor younger than a day: the seasonal ballot is no vote with the reason, never an
    abstention (which would name the panel degraded)."""
    voter = Voter(SeasonalDetector().fit(np.array([[19.0], [21.0]])), threshold=5.0)
    ballot = voter.ballot(Window((20.0,), (0,)))
    assert ballot.vote is False and ballot.score is None and "earlier day" in ballot.reason
    assert voter.ballot(Window((20.0,), (0,), seasons=(20.0,))).vote is False
    assert voter.ballot(Window((29.0,), (0,), seasons=(20.0,))).vote is True


def test_the_web_tier_reads_the_earlier_days_from_redis_as_the_evaluation_computes_them(redis_client, settings):
    """`judge_newest` gets the daily means from the one-minute compaction in the same round trip
    as the window; they equal what the offline replay computes from the raw series, and the
    committed panel's seasonal detector votes on the afternoon that did not rise."""
    from webapp.judging import judge_newest
    from webapp.storage import Store

    store = Store(redis_client, settings)
    panel = build_panel(settings.replace(inference_backend="inprocess"))
    assert panel.seasons == (7, 900.0)
    times = START + FIVE_MIN * np.arange(3 * 288 + 180)
    values = daily(times)
    values[-3:] = values[-40]  # the afternoon stays at its late-morning level
    for t, v in zip(times, values):
        store.append_reading("plant", int(t), float(v))
    window, _ = store.read_judging_state("plant", 10, end=int(times[-1]), seasons=panel.seasons)
    offline = seasons_at(times[:-1], values[:-1], int(times[-1]), *panel.seasons)
    assert len(window.seasons) == 3 and np.allclose(window.seasons, offline)
    _, decision = judge_newest(store, panel, "plant", int(times[-1]), 10)
    ballot = next(b for b in decision.ballots if b.detector == "seasonal")
    assert ballot.vote is True and ballot.score > ballot.threshold, ballot
    assert "seasonal" in decision.as_dict()["votes"] and "seasonal" not in decision.degraded
