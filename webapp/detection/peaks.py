"""Each detector's recent peak: a vote must beat what the sensor's normal readings scored lately.

A threshold calibrated on a short baseline is wrong for a sensor whose normal behaviour turns
noisier later: a detector then votes on every window for days (measured on NAB's real series:
the autoencoder and the forest voting on every reading of a CPU series once its spiky weeks
began). So a detector other than the physical rule votes only when its score is above its
calibrated threshold *and* above the highest score it gave over about the last `span` readings
whose verdict was not critical (with `busy` > 0, only once it has voted on that share of them)
(HTM's "anomaly likelihood" idea, in its simplest form: unusual for this sensor, lately).
Readings judged critical never raise the peak, so a fault that lasts keeps its votes until it
ends, as the reference level never learns a fault (`webapp.detection.drift`).

The peak guards against a normal behaviour that changed over days, so it applies only once
the sensor has been judged for `WARMUP_S` (a day): in its first day after calibration a
detector votes at its calibrated threshold alone. Without the warm-up, a sensor judged for
minutes (SKAB's 1 Hz experiments, 20 minutes each) had its between-fault transients become the
peak, and faults a few minutes later no longer beat it (docs/detection.md).

The peak over a sliding span is kept in O(1) per detector by two blocks of ``span / 2``
readings: the maximum of the block being filled and of the one before it (so the peak
remembers between ``span / 2`` and `span` readings). The state also says which detectors voted
on the sensor's last reading, whose votes may be held (`webapp.detection.hold`). It lives in
Redis beside the sensor's series, so every web replica judges a sensor alike.
"""
from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace

SPAN = 288  # readings: a day at 5-minute steps, about five minutes at 1 Hz
# A detector must beat its peak once it voted on this share of the recent readings; 0 means
# always (the default: measured best on nab-real; 0.1 traded nab-real for SKAB, see docs/detection.md).
BUSY = 0.0
WARMUP_S = 86_400  # seconds a sensor is judged before its peaks apply: a day, at any sampling period


@dataclass(frozen=True)
class RecentPeaks:
    """The highest scores of each detector over a sensor's recent non-critical readings, and
    how often each voted on them. With `busy` > 0 a detector must beat its peak only while it
    votes on at least that share of them (a rarely voting one is trusted at its threshold); with
    0 (`BUSY`'s default) always.

    Examples
    --------
    >>> peaks = RecentPeaks(span=4, busy=0.5, min_seen=2)
    >>> peaks = peaks.after({"lstm": 2.0}, {"lstm": True}, critical=False)
    >>> peaks.bar("lstm") is None  # one reading remembered: too few to judge how busy it is
    True
    >>> peaks = peaks.after({"lstm": 1.0}, {"lstm": True}, critical=False)
    >>> peaks.bar("lstm")  # voting on every reading: it must now beat its peak
    2.0
    >>> peaks.after({"lstm": 9.0}, {"lstm": True}, critical=True).bar("lstm")  # a critical reading teaches nothing
    2.0
    >>> for _ in range(4):
    ...     peaks = peaks.after({"lstm": 0.5}, {"lstm": False}, critical=False)
    >>> peaks.bar("lstm") is None  # quiet for two blocks: trusted at its threshold again
    True
    """

    span: int = SPAN
    count: int = 0  # readings in the block being filled
    previous: Mapping[str, float] = field(default_factory=dict)
    current: Mapping[str, float] = field(default_factory=dict)
    previous_votes: Mapping[str, int] = field(default_factory=dict)
    current_votes: Mapping[str, int] = field(default_factory=dict)
    filled: bool = False  # whether `previous` is a whole block
    busy: float = BUSY
    min_seen: int = 20
    since: int | None = None  # ms: the first reading judged with this state
    warmup_s: float = WARMUP_S
    voted: frozenset[str] = frozenset()  # the detectors that voted on the last reading judged

    def __post_init__(self) -> None:
        if self.span < 2:
            raise ValueError("span must be at least 2 readings")

    @property
    def seen(self) -> int:
        """Readings remembered: the block being filled and, once there is one, the block before."""
        return self.count + (self.span // 2 if self.filled else 0)

    def warm(self, now: int | None) -> bool:
        """Whether the sensor has been judged for `warmup_s` by `now` (ms; None: no warm-up check)."""
        if now is None or self.warmup_s <= 0:
            return True
        return self.since is not None and now - self.since >= self.warmup_s * 1000

    def bar(self, name: str, now: int | None = None) -> float | None:
        """The score `name` must beat to vote on the reading at `now` (ms) (None: it votes at its
        threshold alone, as it does during the warm-up)."""
        if not self.warm(now):
            return None
        if self.busy > 0:
            votes = self.previous_votes.get(name, 0) + self.current_votes.get(name, 0)
            if self.seen < min(self.min_seen, self.span // 2) or votes < self.busy * self.seen:
                return None
        seen = [p for p in (self.previous.get(name), self.current.get(name)) if p is not None]
        return max(seen) if seen else None

    def after(self, scores: Mapping[str, float], above: Mapping[str, bool], critical: bool,
              now: int | None = None, voted: frozenset[str] = frozenset()) -> RecentPeaks:
        """The state after the reading at `now` (ms) scored `scores` (`above`: which were above
        their threshold) and got the votes of `voted`: only the warm-up clock starts and `voted`
        is kept when its verdict was critical."""
        state = replace(self, voted=frozenset(voted))
        if state.since is None and now is not None:
            state = replace(state, since=int(now))
        if critical:
            return state
        current, votes = dict(state.current), dict(state.current_votes)
        for name, score in scores.items():
            current[name] = max(score, current.get(name, score))
            votes[name] = votes.get(name, 0) + int(bool(above.get(name)))
        if state.count + 1 >= state.span // 2:
            return replace(state, count=0, previous=current, current={}, previous_votes=votes, current_votes={},
                           filled=True)
        return replace(state, count=state.count + 1, current=current, current_votes=votes)

    def as_fields(self) -> dict[str, str]:
        """The state as a Redis hash: ``count``, ``filled``, ``p:``/``c:<detector>`` peaks,
        ``pv:``/``cv:<detector>`` vote counts and ``voted`` (comma-separated names)."""
        fields = {"count": str(self.count), "filled": str(int(self.filled)), "voted": ",".join(sorted(self.voted))}
        if self.since is not None:
            fields["since"] = str(self.since)
        for prefix, values in (("p:", self.previous), ("c:", self.current)):
            fields.update({f"{prefix}{k}": repr(float(v)) for k, v in values.items()})
        for prefix, counts in (("pv:", self.previous_votes), ("cv:", self.current_votes)):
            fields.update({f"{prefix}{k}": str(int(v)) for k, v in counts.items()})
        return fields

    @classmethod
    def from_fields(cls, fields: Mapping[str, str] | None, span: int = SPAN) -> RecentPeaks:
        """The state read back from `as_fields` (empty or unreadable: nothing remembered).

        >>> state = RecentPeaks(8, 3, {"a": 1.5}, {"a": 0.5}, {"a": 2}, {"a": 1}, True, since=1_000,
        ...                     voted=frozenset({"a", "b"}))
        >>> RecentPeaks.from_fields(state.as_fields(), span=8) == state
        True
        >>> RecentPeaks.from_fields({"count": "x"}, span=8) == RecentPeaks(8)
        True
        """
        try:
            fields = dict(fields or {})
            count = int(fields.get("count", 0))
            filled = fields.get("filled") == "1"
            since = int(fields["since"]) if "since" in fields else None
            voted = frozenset(name for name in str(fields.get("voted", "")).split(",") if name)
            part = {prefix: {k[len(prefix):]: v for k, v in fields.items() if k.startswith(prefix)}
                    for prefix in ("p:", "c:", "pv:", "cv:")}
            previous = {k: float(v) for k, v in part["p:"].items()}
            current = {k: float(v) for k, v in part["c:"].items()}
            previous_votes = {k: int(v) for k, v in part["pv:"].items()}
            current_votes = {k: int(v) for k, v in part["cv:"].items()}
        except (TypeError, ValueError):
            return cls(span)
        return cls(span, min(max(count, 0), span // 2 - 1), previous, current, previous_votes, current_votes, filled,
                   since=since, voted=voted)


def adaptive(names: Iterable[str]) -> frozenset[str]:
    """The detectors whose votes must beat their recent peak: all but the physical rule, whose
    limits are absolute (a reading out of range is a breach however often it happens)."""
    return frozenset(n for n in names if n != "physical")
