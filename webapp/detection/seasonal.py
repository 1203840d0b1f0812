"""The seasonal detector: the newest readings against the same time of day on the days before.

A plant's readings often follow the day: a load that rises every morning, a cooling cycle
every night. Then a reading can be ordinary for the last hours and still wrong for *this*
time of day (the daily peak that did not come, a flat stretch where the cycle should be, a
peak higher than any before it at that hour). No window or recent context sees that; the same
time yesterday does.

For the reading at time t it takes the mean of the sensor's readings in the `span_s` seconds
ending at t, and the same mean ending at t − 1 day, t − 2 days, … t − `days` days (a `Window`
carries those daily means in ``seasons``, read by the web tier from the one-minute compaction
Redis already keeps, so the cost is `days` short range reads whatever the sampling period).
The score is the distance from the median of the daily means, in robust standard deviations
of them (1.4826 × their median absolute deviation), floored at `floor` × the sensor profile's
scale, as the context detector does. Everything is in time: the same parameters mean the same
on a 1 s, a 5 min and a 1 h sensor.

With fewer than `min_days` earlier days there is nothing to compare with: the detector does not
vote (`NoOpinion`), which is not a fault of the panel. So on a sensor younger than a day (and on
every series of the evaluation shorter than two days) it never votes.
"""
from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Sequence

import numpy as np

from webapp.detection.base import Detector
from webapp.detection.base import NoOpinion
from webapp.detection.base import Window
from webapp.detection.context import MAD_TO_STD
from webapp.detection.features import Profile

DAY_MS = 86_400_000


def day_means(days: Iterable[Sequence[tuple[int, float]]]) -> tuple[float, ...]:
    """The mean reading of each day's span that holds any, in the order given (days without a
    reading in the span are left out).

    >>> day_means([[(0, 1.0), (1, 3.0)], [], [(5, 4.0)]])
    (2.0, 4.0)
    """
    return tuple(float(np.mean([v for _, v in samples])) for samples in days if len(samples))


def spans(now_ms: int, days: int, span_s: float) -> list[tuple[int, int]]:
    """``(start, end)`` ms of the span ending at the same time on each of the `days` days
    before `now_ms`, yesterday first; both ends inclusive, the start just after ``end − span``.

    >>> spans(2 * DAY_MS, days=2, span_s=60)
    [(86340001, 86400000), (-59999, 0)]
    """
    return [(now_ms - k * DAY_MS - int(span_s * 1000) + 1, now_ms - k * DAY_MS) for k in range(1, days + 1)]


class SeasonalDetector(Detector):
    """The newest readings' robust deviation from the same time of day on earlier days.

    Parameters
    ----------
    days
        Earlier days compared with (a week by default).
    span_s
        Seconds of readings averaged, ending at the judged reading and at the same time on each
        earlier day (15 minutes: three readings at 5-minute steps, fifteen one-minute means at 1 Hz).
    min_days
        Fewest earlier days it judges with; below that it has no opinion.
    floor
        Smallest spread, as a fraction of the sensor profile's scale.

    Examples
    --------
    >>> detector = SeasonalDetector().fit(np.array([[19.0], [21.0]]))
    >>> usual = Window((20.0, 20.2), (0, 60_000), seasons=(20.1, 20.0, 20.2))
    >>> odd = Window((23.0, 23.0), (0, 60_000), seasons=(20.1, 20.0, 20.2))
    >>> detector.score_one(usual) < 3 < detector.score_one(odd)
    True
    """

    name = "seasonal"
    absolute = True  # it judges against the sensor's own history: the reference level changes nothing

    def __init__(self, days: int = 7, span_s: float = 900.0, min_days: int = 1, floor: float = 0.05):
        self.days = days
        self.span_s = span_s
        self.min_days = min_days
        self.floor = floor

    def params(self) -> dict:
        """The parameters, as the manifest keeps them."""
        return {"days": self.days, "span_s": self.span_s, "min_days": self.min_days, "floor": self.floor}

    def fit(self, windows: np.ndarray) -> SeasonalDetector:
        """Learn the sensor profile (its scale floors the spread) from normal windows."""
        rows = np.atleast_2d(np.asarray(windows, dtype=np.float64))
        self.profile_ = Profile.fit(rows[:, -1])
        return self

    def now_mean(self, window: Window) -> float:
        """The mean of the window's readings in the `span_s` ending at its newest."""
        stamps = np.asarray(window.timestamps, dtype=np.int64)
        recent = stamps > stamps[-1] - self.span_s * 1000
        return float(window.array[recent].mean())

    def score_one(self, window: Window) -> float:
        seasons = np.asarray(window.seasons[:self.days], dtype=np.float64)
        if len(seasons) < self.min_days:
            raise NoOpinion(f"needs {self.min_days} earlier day(s) of readings, has {len(seasons)}")
        median = float(np.median(seasons))
        spread = MAD_TO_STD * float(np.median(np.abs(seasons - median)))
        return abs(self.now_mean(window) - median) / max(spread, self.floor * self.profile_.scale)

    def score_series(self, times_ms: np.ndarray, values: np.ndarray) -> np.ndarray:
        """The score of every reading of a series judged against the days before it within the
        series (NaN while it has fewer than `min_days`); the same numbers as `score_one` on
        windows built with `seasons_at`."""
        times_ms = np.asarray(times_ms, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        out = np.full(len(values), np.nan)
        first = np.searchsorted(times_ms, times_ms[0] + DAY_MS)
        for i in range(first, len(values)):
            if not np.isfinite(values[i]):
                continue
            recent = slice(np.searchsorted(times_ms, times_ms[i] - self.span_s * 1000, side="right"), i + 1)
            window = Window(tuple(values[recent]), tuple(int(t) for t in times_ms[recent]),
                            seasons=seasons_at(times_ms, values, int(times_ms[i]), self.days, self.span_s))
            try:
                out[i] = self.score_one(window)
            except NoOpinion:
                pass
        return out

    @property
    def version(self) -> str:
        return str(getattr(self, "version_", "rule"))


def seasons_at(times_ms: np.ndarray, values: np.ndarray, now_ms: int, days: int, span_s: float) -> tuple[float, ...]:
    """The daily means `SeasonalDetector` compares the reading at `now_ms` with, from a series
    held in memory (times in ms, sorted; NaN readings skipped): what the web tier reads from Redis."""
    found = []
    for start, end in spans(now_ms, days, span_s):
        lo, hi = np.searchsorted(times_ms, start), np.searchsorted(times_ms, end, side="right")
        found.append([(int(t), float(v)) for t, v in zip(times_ms[lo:hi], values[lo:hi]) if np.isfinite(v)])
    return day_means(found)


def calibrated_entry(times_ms: np.ndarray, values: np.ndarray, plan, version: int,
                     detector: SeasonalDetector | None = None, min_scores: int = 100) -> dict | None:
    """The manifest entry of the seasonal detector for a normal series with its timestamps
    (offline, beside `webapp.detection.training.train_detectors`, which sees values only): its
    threshold is calibrated like the others' on the readings that have an earlier day within
    the series. None when fewer than `min_scores` have (a series shorter than about a day)."""
    from webapp.detection.training import _entry  # offline only: the web worker never calls this

    detector = detector or SeasonalDetector()
    values = np.asarray(values, dtype=np.float64)
    detector.fit(values[np.isfinite(values)][:, None])
    scores = detector.score_series(times_ms, values)
    if np.isfinite(scores).sum() < min_scores:
        return None
    return _entry(detector, scores, plan, version, params=detector.params(), window_size=1)
