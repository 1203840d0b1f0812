"""Confirmed alarms: a quorum is critical only when the reading before it already drew M − 1 votes.

A quorum that forms out of nothing, on one reading after a reading with no more than M − 2
votes, is most often three detectors crossing their thresholds together on one odd reading; a
fault builds its evidence over readings. Alarm management's answer to such one-reading alarms
is the on-delay (ISA-18.2, EEMUA 191): the condition must persist before it is annunciated.
Asking the full quorum to persist for two readings cost windows that only a one-reading quorum
caught (measured, docs/detection.md); asking the evidence to be *building* does not. So a
quorum is **confirmed** when the previous reading had at least ``required - 1`` votes (its
detectors named in the recent peaks' ``voted``, `webapp.detection.peaks`), and an unconfirmed
quorum is a warning marked ``unconfirmed``. If the quorum persists, the next reading is
confirmed by this one and is critical: a sudden fault is annunciated one reading later.

An unconfirmed quorum is still a quorum (`Decision.agreed`): the reading teaches the reference
level and the recent peaks nothing, as a critical one would not. A judge with no memory of the
previous reading (no recent peaks: a caller that keeps no state) confirms every quorum.
"""
from __future__ import annotations

from collections.abc import Collection

SHORT = 1  # how many votes the previous reading may fall short of the quorum by


def confirmed(previous: Collection[str] | None, required: int, short: int = SHORT) -> bool:
    """Whether a quorum of `required` on this reading is confirmed by the detectors that voted
    on the previous one (`previous`; None: nothing is remembered, so nothing is asked).

    >>> confirmed({"autoencoder", "lstm"}, required=3), confirmed({"lstm"}, required=3)
    (True, False)
    >>> confirmed(None, required=3)
    True
    """
    return previous is None or len(previous) >= required - short
