"""Robust fusion of one round's readings: median/MAD outlier exclusion, mean of the rest.

A node whose reading lies further from the median than ``k`` robust standard deviations
(1.4826·MAD, the MAD scaled to σ for normal noise) — and further than ``min_spread`` in
physical units, so identical sensors (MAD 0) do not exclude each other over noise — is left
out of the fused value and reported. With fewer than three readings nobody can be outvoted,
so nothing is excluded. One bad node thus neither dilutes a real anomaly (all nodes move
together and stay in) nor raises a false one (it alone moves and is excluded).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class Fused:
    """The fused value, the readings kept, and the readings excluded with a reason."""

    value: float
    kept: tuple[tuple[str, float], ...]
    excluded: tuple[tuple[str, float, str], ...]


def fuse(readings: dict[str, float], k: float = 3.5, min_spread: float = 0.5) -> Fused:
    """Fuse ``{node_id: value}`` into one value.

    Parameters
    ----------
    readings
        One finite value per node; at least one.
    k
        Exclusion bound in robust standard deviations from the median.
    min_spread
        A reading closer than this to the median (physical units) is always kept.

    Raises
    ------
    ValueError
        If `readings` is empty, holds a non-finite value, or `k`/`min_spread` are invalid.

    Examples
    --------
    >>> f = fuse({"n1": 71.2, "n2": 71.3, "n3": 150.0})
    >>> round(f.value, 2), [node for node, _, _ in f.excluded]
    (71.25, ['n3'])
    >>> fuse({"n1": 90.0, "n2": 90.4, "n3": 89.8}).excluded
    ()
    """
    if not readings:
        raise ValueError("readings must not be empty")
    if not (k > 0 and math.isfinite(k)) or not (min_spread >= 0 and math.isfinite(min_spread)):
        raise ValueError("k must be positive and min_spread non-negative")
    if not all(math.isfinite(v) for v in readings.values()):
        raise ValueError("readings must be finite")
    nodes = sorted(readings)
    if len(nodes) < 3:
        return Fused(statistics.fmean(readings.values()), tuple((n, readings[n]) for n in nodes), ())
    median = statistics.median(readings.values())
    mad = statistics.median(abs(v - median) for v in readings.values())
    bound = max(k * MAD_TO_SIGMA * mad, min_spread)
    kept = tuple((n, readings[n]) for n in nodes if abs(readings[n] - median) <= bound)
    reason = f"beyond {k:g} MAD of median {median:.6g} (bound {bound:.3g})"
    excluded = tuple((n, readings[n], reason) for n in nodes if abs(readings[n] - median) > bound)
    return Fused(statistics.fmean(v for _, v in kept), kept, excluded)
