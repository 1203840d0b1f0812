"""Held votes: a detector that voted on the previous reading keeps its vote through a deadband.

Detectors that see one fault rarely cross their thresholds on the same reading: the context
detector fires on the first reading of a jump, the LSTM a reading or two later, the autoencoder
when the jump fills enough of its window, and each may dip below its threshold for a reading
while the fault goes on. Judged reading by reading, a quorum then never forms although every
detector saw the fault (measured on NAB's real series: the vote caught fewer windows than the
autoencoder alone). So a vote has hysteresis, as a thermostat does: a detector that voted on the
previous reading still votes while its score stays above its **hold level**, part of the way
from its median calibration score back up to its threshold::

    hold = median + HOLD * (threshold - median)

Both figures come from the model manifest (``calibration.median_score``, the median of the
out-of-sample scores the threshold was calibrated on), so the deadband is in each detector's
own units and needs no parameter per sensor.

Three guards keep a held vote from making an alarm of its own:

- a critical verdict needs at least one **fresh** vote (a score above the threshold now, and
  above its recent peak); votes that are all held make a warning at most (`webapp.detection.vote`);
- a held vote ends with the excursion: once the newest readings are back in the sensor's band
  (`webapp.detection.excursion`), no vote is held into the next reading;
- only the window models hold, the autoencoder and the LSTM (`HOLDS`): their score of one fault
  rises and dips as the fault moves through their ten readings. The IsolationForest's score is
  a path length that jumps from window to window, and held it voted on readings long after a
  fault; the context and seasonal detectors already average their newest three readings, and
  the context detector is the yardstick that says when an excursion has ended, so holding its
  vote would outlast its own verdict; the physical rule's limits are absolute (all measured,
  docs/detection.md).

Which detectors voted on the previous reading is kept with their recent peaks, in the hash
beside the sensor's series (`webapp.detection.peaks`), so every web replica holds alike.
"""
from __future__ import annotations

HOLD = 0.5  # share of the way from the median calibration score up to the threshold
HOLDS = frozenset({"autoencoder", "lstm"})  # the detectors whose votes may be held


def hold_level(name: str, threshold: float, median: float | None, share: float = HOLD) -> float | None:
    """The score above which `name`'s vote on the previous reading is held (None: never held).

    >>> hold_level("autoencoder", threshold=3.0, median=1.0)
    2.0
    >>> hold_level("isolation_forest", threshold=0.6, median=0.4) is None
    True
    >>> hold_level("context", threshold=6.0, median=1.0) is None
    True
    >>> hold_level("lstm", threshold=3.0, median=None) is None  # a manifest without the median
    True
    """
    if name not in HOLDS or median is None or share <= 0 or not median < threshold:
        return None
    return median + share * (threshold - median)
