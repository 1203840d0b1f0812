"""Each detector alone over a sweep of threshold factors: its curve of windows caught against
false-alarm incidents, summed over series, and read at the vote's recall.
"""
from __future__ import annotations


def sum_curves(sweeps) -> dict[str, list[list]]:
    """Per detector, several series' sweeps added up point by point: [factor, caught, false alarms].

    >>> sum_curves([{"lstm": [[1.0, 2, 5]]}, {"lstm": [[1.0, 1, 3]]}])
    {'lstm': [[1.0, 3, 8]]}
    """
    summed: dict[str, list[list]] = {}
    for sweep in sweeps:
        for detector, curve in sweep.items():
            total = summed.setdefault(detector, [[factor, 0, 0] for factor, _, _ in curve])
            for point, (_, caught, false) in zip(total, curve):
                point[1] += caught
                point[2] += false
    return summed


def at_recall(curve: list[list], caught: int) -> dict | None:
    """The strictest point of a detector's threshold sweep that still catches `caught`
    windows: that detector at the vote's recall (None: no threshold of the sweep gets there).

    >>> at_recall([[0.5, 9, 40], [1.0, 7, 12], [2.0, 5, 3]], caught=6)
    {'factor': 1.0, 'caught': 7, 'false_alarms': 12}
    """
    able = [p for p in curve if p[1] >= caught]
    if not able:
        return None
    factor, got, false = max(able, key=lambda p: p[0])
    return {"factor": factor, "caught": got, "false_alarms": false}
