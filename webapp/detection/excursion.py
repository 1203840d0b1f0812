"""Verdicts end with the fault: an excursion the newest readings have left holds no critical verdict.

The window detectors (forest, autoencoder, LSTM, the physical rule's rate and stuck checks)
judge the newest ten readings, so a spike keeps their votes for as long as it stays in their
window: the dashboard showed "critical" at 21.4 °C, seven readings after the spike had ended.
A verdict is about the newest reading, so a critical verdict needs the excursion to be current.

The yardstick is the context detector's (`webapp.detection.context`): each reading's distance
from the median of the sensor's recent past (the context before the judged window), in robust
standard deviations of that past. An excursion has **ended** when each of the newest `SETTLE`
readings is back inside the band (within the context detector's calibrated threshold of that
median) while an older reading of the window is still outside it. The votes then describe a
reading that is gone: the verdict is a warning, marked ``excursion_ended``, and the reading
still teaches the peaks and the reference level nothing (it is part of the fault).

What it does not touch: a fault the newest readings still carry (a step, a lasting drift, a
spike in its first `SETTLE` readings), a stuck sensor or a shape anomaly that never leaves the
band (no reading outside it), and a sensor without enough history for the context.
"""
from __future__ import annotations

import numpy as np

SETTLE = 3  # readings back inside the band after which a critical verdict ends


def ended(deviations: np.ndarray, band: float, settle: int = SETTLE) -> bool:
    """Whether the window's excursion is over: its newest `settle` readings are within `band`
    and an older one is not (`deviations`: each window reading's robust deviation, newest last).

    >>> ended(np.array([0.5, 9.0, 1.0, 0.2, 0.8]), band=4.0)  # the spike, then three calm readings
    True
    >>> ended(np.array([0.5, 0.4, 9.0, 1.0, 0.2]), band=4.0)  # only two calm readings since
    False
    >>> ended(np.array([0.5, 1.0, 0.2, 0.8, 0.3]), band=4.0)  # no excursion at all
    False
    """
    deviations = np.asarray(deviations, dtype=np.float64)
    if len(deviations) <= settle:
        return False
    return bool((deviations[-settle:] <= band).all() and (deviations[:-settle] > band).any())
