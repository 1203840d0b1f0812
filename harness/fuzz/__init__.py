"""Hostile-input fuzzing of the web tier over HTTP (`make fuzz`, `scripts/fuzz.py`).

`harness.fuzz.attacks` makes the requests (a seeded `Generator`); `harness.fuzz.checks` sends
them and checks each answer against Redis (`fuzz`); `harness.fuzz.campaign` runs one against a
given or a private stack. Importing a module starts nothing.
"""
from __future__ import annotations

from harness.fuzz.attacks import FENCED_EPOCH
from harness.fuzz.attacks import FENCED_GROUP
from harness.fuzz.attacks import Generator
from harness.fuzz.attacks import Request
from harness.fuzz.checks import Report
from harness.fuzz.checks import StoreState
from harness.fuzz.checks import fuzz

__all__ = ["FENCED_EPOCH", "FENCED_GROUP", "Generator", "Report", "Request", "StoreState", "fuzz"]
