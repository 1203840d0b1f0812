"""Each detector's recent peak: a vote must beat what the sensor's normal readings scored lately.

A threshold calibrated on a short baseline is wrong for a sensor whose normal behaviour turns
noisier later: a detector then votes on every window for days (measured on NAB's real series:
the autoencoder and the forest voting on every reading of a CPU series once its spiky weeks
began). So a detector other than the physical rule votes only when its score is above its
calibrated threshold *and* above the highest score it gave over about the last `span`
readings whose verdict was not critical (HTM's "anomaly likelihood" idea, in its simplest
form: unusual for this sensor, lately). Readings judged critical never raise the peak, so a
fault that lasts keeps its votes until it ends, as the reference level never learns a fault
(`webapp.detection.drift`).

The peak over a sliding span is kept in O(1) per detector by two blocks of ``span / 2``
readings: the maximum of the block being filled and of the one before it (so the peak
remembers between ``span / 2`` and `span` readings). The state lives in Redis beside the
sensor's series, so every web replica judges a sensor alike.
"""
from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field

SPAN = 288  # readings: a day at 5-minute steps, about five minutes at 1 Hz


@dataclass(frozen=True)
class RecentPeaks:
    """The highest scores of each detector over a sensor's recent non-critical readings.

    Examples
    --------
    >>> peaks = RecentPeaks(span=4)
    >>> peaks.bar("lstm") is None
    True
    >>> peaks = peaks.after({"lstm": 2.0}, critical=False).after({"lstm": 1.0}, critical=False)
    >>> peaks.bar("lstm")  # both readings are in the block just filled
    2.0
    >>> peaks.after({"lstm": 9.0}, critical=True).bar("lstm")  # a critical reading teaches nothing
    2.0
    >>> for _ in range(4):
    ...     peaks = peaks.after({"lstm": 0.5}, critical=False)
    >>> peaks.bar("lstm")  # two blocks later the 2.0 is forgotten
    0.5
    """

    span: int = SPAN
    count: int = 0  # readings in the block being filled
    previous: Mapping[str, float] = field(default_factory=dict)
    current: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.span < 2:
            raise ValueError("span must be at least 2 readings")

    def bar(self, name: str) -> float | None:
        """The score `name` must beat to vote (None: nothing remembered yet)."""
        seen = [p for p in (self.previous.get(name), self.current.get(name)) if p is not None]
        return max(seen) if seen else None

    def after(self, scores: Mapping[str, float], critical: bool) -> RecentPeaks:
        """The peaks after a reading scored `scores`: unchanged when its verdict was critical."""
        if critical:
            return self
        current = dict(self.current)
        for name, score in scores.items():
            current[name] = max(score, current.get(name, score))
        if self.count + 1 >= self.span // 2:
            return RecentPeaks(self.span, 0, current, {})
        return RecentPeaks(self.span, self.count + 1, self.previous, current)

    def as_fields(self) -> dict[str, str]:
        """The state as a Redis hash: ``count``, ``p:<detector>`` and ``c:<detector>``."""
        fields = {"count": str(self.count)}
        fields.update({f"p:{k}": repr(float(v)) for k, v in self.previous.items()})
        fields.update({f"c:{k}": repr(float(v)) for k, v in self.current.items()})
        return fields

    @classmethod
    def from_fields(cls, fields: Mapping[str, str] | None, span: int = SPAN) -> RecentPeaks:
        """The state read back from `as_fields` (empty or unreadable: nothing remembered).

        >>> RecentPeaks.from_fields(RecentPeaks(8, 3, {"a": 1.5}, {"a": 0.5}).as_fields(), span=8)
        RecentPeaks(span=8, count=3, previous={'a': 1.5}, current={'a': 0.5})
        >>> RecentPeaks.from_fields({"count": "x"}, span=8)
        RecentPeaks(span=8, count=0, previous={}, current={})
        """
        try:
            fields = dict(fields or {})
            count = int(fields.pop("count", 0))
            previous = {k[2:]: float(v) for k, v in fields.items() if k.startswith("p:")}
            current = {k[2:]: float(v) for k, v in fields.items() if k.startswith("c:")}
        except (TypeError, ValueError):
            return cls(span)
        return cls(span, min(max(count, 0), span // 2 - 1), previous, current)


def adaptive(names: Iterable[str]) -> frozenset[str]:
    """The detectors whose votes must beat their recent peak: all but the physical rule, whose
    limits are absolute (a reading out of range is a breach however often it happens)."""
    return frozenset(n for n in names if n != "physical")
