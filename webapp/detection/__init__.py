"""Detectors, the thresholds that turn their scores into votes, and the M-of-N vote."""
from __future__ import annotations

from webapp.config import Settings
from webapp.detection.physical import THRESHOLD as PHYSICAL_THRESHOLD
from webapp.detection.physical import PhysicalRule
from webapp.detection.vote import Abstainer
from webapp.detection.vote import Panel
from webapp.detection.vote import Voter

LEARNED = ("isolation_forest", "autoencoder", "lstm")


def build_panel(settings: Settings) -> Panel:
    """The detectors every window is judged by, and the quorum they need (``VOTE_REQUIRED``)."""
    voters = [Voter(PhysicalRule(settings.limits_for), PHYSICAL_THRESHOLD)]
    voters += [Abstainer(name, "not deployed") for name in LEARNED]
    return Panel(voters, settings.vote_required)
