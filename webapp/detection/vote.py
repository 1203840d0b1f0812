"""Ballots, voters and the M-of-N vote that turns them into one verdict.

A `Voter` pairs a detector with its threshold (and its hold level: a vote on the previous
reading is held through a deadband, `webapp.detection.hold`). A detector that cannot answer
(model server down, timeout, not deployed) abstains: its ballot has ``vote=None`` and the
reason, and the decision names it in ``degraded``. Abstentions never count as votes either way.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace

from webapp.detection.base import Detector
from webapp.detection.base import DetectorUnavailable
from webapp.detection.base import Window
from webapp.detection.confirm import confirmed
from webapp.detection.drift import DriftFollower
from webapp.detection.excursion import SETTLE
from webapp.detection.excursion import ended
from webapp.detection.peaks import SPAN
from webapp.detection.peaks import RecentPeaks
from webapp.detection.peaks import adaptive

log = logging.getLogger(__name__)

LEVELS = ("normal", "warning", "critical")


@dataclass(frozen=True)
class Ballot:
    """One detector's answer about one window."""

    detector: str
    vote: bool | None
    score: float | None = None
    threshold: float | None = None
    version: str | None = None
    reason: str | None = None
    bar: float | None = None  # the detector's recent peak the score had to beat (`webapp.detection.peaks`)
    held: bool = False  # a vote only because it voted on the previous reading (`webapp.detection.hold`)

    @property
    def fresh(self) -> bool:
        """Whether this is a vote of its own: its score above the threshold (and the peak) now."""
        return bool(self.vote) and not self.held

    def as_dict(self) -> dict:
        body = {"vote": self.vote, "score": self.score, "threshold": self.threshold}
        if self.bar is not None:
            body["recent_peak"] = self.bar
        if self.held:
            body["held"] = True
        if self.reason:
            body["reason"] = self.reason
        return body


class Voter:
    """A detector, the threshold above which its score is a vote for "anomalous", and the hold
    level above which its vote on the previous reading is held (None: never held)."""

    def __init__(self, detector: Detector, threshold: float, hold: float | None = None):
        self.detector = detector
        self.threshold = threshold
        self.hold = hold

    @property
    def name(self) -> str:
        return self.detector.name

    @property
    def absolute(self) -> bool:
        """Whether the detector judges raw values (never a window moved to follow drift)."""
        return self.detector.absolute

    def ballot(self, window: Window, bar: float | None = None, held: bool = False) -> Ballot:
        """The detector's ballot on `window`: a vote when its score is above the threshold and
        above `bar`, its recent peak (None: no peak to beat), or, when it voted on the previous
        reading (`held`), while its score is at least its hold level."""
        try:
            score = float(self.detector.score_one(window))
        except DetectorUnavailable as exc:
            return Ballot(self.name, None, threshold=self.threshold, reason=str(exc))
        if not math.isfinite(score):
            return Ballot(self.name, None, threshold=self.threshold, reason="score is not finite")
        vote = score > self.threshold and (bar is None or score > bar)
        kept = not vote and held and self.hold is not None and score >= self.hold
        return Ballot(self.name, vote or kept, score, self.threshold, self.detector.version, bar=bar, held=kept)

    def state(self) -> str:
        """``ok``, or why the detector cannot answer now (shown by ``/readyz``)."""
        probe = getattr(self.detector, "state", None)
        return probe() if callable(probe) else "ok"


class Abstainer:
    """Stands for a detector that is not deployed: it always abstains, saying why."""

    absolute = True

    def __init__(self, name: str, reason: str):
        self.name = name
        self.reason = reason

    def ballot(self, window: Window, bar: float | None = None, held: bool = False) -> Ballot:
        return Ballot(self.name, None, reason=self.reason)

    def state(self) -> str:
        return self.reason


@dataclass(frozen=True)
class Decision:
    """The verdict on one window and every ballot behind it."""

    verdict: str
    ballots: tuple[Ballot, ...]
    required: int
    votes: int
    degraded: tuple[str, ...] = field(default=())
    reference: float | None = None  # the sensor's reference level the learned detectors judged against
    excursion_ended: bool = False  # a quorum agreed, on a window whose excursion is over (`webapp.detection.excursion`)
    unconfirmed: bool = False  # a quorum agreed, after a reading with too few votes (`webapp.detection.confirm`)

    @property
    def anomaly(self) -> bool:
        return self.verdict == "critical"

    @property
    def agreed(self) -> bool:
        """Whether a quorum voted (critical, or a warning only because the excursion ended or the
        quorum is not yet confirmed): such a reading is part of a fault, so it teaches the
        reference level and the peaks nothing."""
        return self.votes >= self.required

    @property
    def level(self) -> int:
        return LEVELS.index(self.verdict)

    def as_dict(self) -> dict:
        return {
            "verdict": self.verdict,
            "anomaly": self.anomaly,
            "votes": {b.detector: b.as_dict() for b in self.ballots},
            "quorum": {"required": self.required, "of": len(self.ballots), "votes": self.votes},
            "degraded": list(self.degraded),
            "model_versions": {b.detector: b.version for b in self.ballots if b.version},
            "reference_level": self.reference,
            "excursion_ended": self.excursion_ended,
            "unconfirmed": self.unconfirmed,
        }


def decide(ballots: Sequence[Ballot], required: int) -> Decision:
    """Critical when at least `required` ballots vote yes, one of them fresh (not held), warning
    at one or more, else normal.

    >>> yes, no = Ballot("a", True, 2.0, 1.0), Ballot("b", False, 0.1, 1.0)
    >>> decide([yes, yes, no], required=2).verdict
    'critical'
    >>> held = Ballot("c", True, 0.9, 1.0, held=True)
    >>> decide([yes, held, no], required=2).verdict, decide([held, held, no], required=2).verdict
    ('critical', 'warning')
    >>> decide([yes, no, Ballot("c", None, reason="down")], required=2).degraded
    ('c',)
    """
    votes = sum(1 for b in ballots if b.vote)
    quorum = votes >= required and any(b.fresh for b in ballots)
    verdict = "critical" if quorum else "warning" if votes else "normal"
    degraded = tuple(b.detector for b in ballots if b.vote is None)
    return Decision(verdict, tuple(ballots), required, votes, degraded)


class Panel:
    """The detectors that judge every window, the quorum they need, how the sensor's reference
    level follows slow drift (`follower`; None when no learned detector is live), and how many
    recent readings a detector's peak spans (`span`, `webapp.detection.peaks`). With a context
    detector on the panel, a critical verdict ends with its excursion (`webapp.detection.excursion`);
    with the recent peaks, a quorum is critical only once the reading before it drew all but one
    of its votes (`webapp.detection.confirm`)."""

    def __init__(self, voters: Sequence[Voter | Abstainer], required: int, follower: DriftFollower | None = None,
                 span: int = SPAN):
        self.voters = tuple(voters)
        self.required = required
        self.follower = follower
        self.span = span
        self.adaptive = adaptive(voter.name for voter in self.voters)
        self.yardstick = next((v for v in self.voters if isinstance(v, Voter) and v.name == "context"), None)

    def judge(self, window: Window, level: float | None = None, peaks: RecentPeaks | None = None) -> Decision:
        """Judge `window`; the learned detectors see it moved to the sensor's reference `level`,
        and with `peaks` every detector but the physical rule must beat its recent peak."""
        return self._decide([voter.ballot(*question) for voter, question in self._questions(window, level, peaks)],
                            level, window, peaks)

    def _questions(self, window: Window, level: float | None, peaks: RecentPeaks | None) -> list[tuple]:
        """Each voter with what its ballot is asked about: the window (moved to `level` unless the
        detector judges raw values), the recent peak to beat (None: none, or not yet) and
        whether it voted on the previous reading (its vote may be held)."""
        moved = self.follower.move(window, level) if self.follower else window
        now = window.timestamps[-1]
        return [(voter, (window if voter.absolute else moved,
                         peaks.bar(voter.name, now) if peaks is not None and voter.name in self.adaptive else None,
                         peaks is not None and voter.name in peaks.voted))
                for voter in self.voters]

    def follow(self, level: float | None, window: Window, decision: Decision) -> float | None:
        """The sensor's reference level after `decision` (None: nothing to follow)."""
        return self.follower.follow(level, window, decision.agreed) if self.follower else None

    def remember(self, peaks: RecentPeaks | None, decision: Decision, now: int | None = None) -> RecentPeaks:
        """The detectors' recent peaks after `decision` on the reading at `now` (ms) (unchanged
        when it was critical, but for the warm-up clock), and which detectors voted on it (none
        once its excursion ended: no vote is held past a fault, `webapp.detection.hold`)."""
        scored = [b for b in decision.ballots if b.score is not None and b.detector in self.adaptive]
        voted = () if decision.excursion_ended else (b.detector for b in decision.ballots if b.vote)
        return (peaks or RecentPeaks(self.span)).after({b.detector: b.score for b in scored},
                                                       {b.detector: b.score > b.threshold for b in scored},
                                                       decision.agreed, now, voted=frozenset(voted))

    def _decide(self, ballots: list[Ballot], level: float | None, window: Window,
                peaks: RecentPeaks | None = None) -> Decision:
        decision = decide(ballots, self.required)
        if decision.anomaly and self._excursion_ended(window):
            decision = replace(decision, verdict="warning", excursion_ended=True)
        elif decision.anomaly and not confirmed(None if peaks is None else peaks.voted, self.required):
            decision = replace(decision, verdict="warning", unconfirmed=True)
        if self.follower is None:
            return decision
        return replace(decision, reference=self.follower.center if level is None else level)

    def _excursion_ended(self, window: Window) -> bool:
        """Whether the newest readings have left the excursion in the judged window (the
        learned detectors' window; always False without a context detector, or while its
        context is too short)."""
        if self.yardstick is None:
            return False
        judged = self.follower.window if self.follower else 10
        deviations = self.yardstick.detector.deviations(window, max(judged, SETTLE + 1))
        return deviations is not None and ended(deviations, self.yardstick.threshold)

    def status(self) -> dict[str, str]:
        """Each detector's state: ``ok`` or the reason it abstains."""
        return {voter.name: voter.state() for voter in self.voters}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(voter.name for voter in self.voters)

    @property
    def readings(self) -> int:
        """The most readings any detector judges with (the context detector's context); the
        window `judge` gets should hold this many, the newest last."""
        return max((getattr(getattr(v, "detector", None), "readings", 0) for v in self.voters), default=0)
