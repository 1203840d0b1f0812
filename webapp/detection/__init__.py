"""Detectors, the thresholds that turn their scores into votes, and the M-of-N vote."""
from __future__ import annotations

from webapp.detection.panel import build_panel

__all__ = ["build_panel"]
