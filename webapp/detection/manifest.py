"""The model manifest (``serving/models/manifest.json``): which version of each learned
detector is live, its calibrated threshold, window size and sensor profile.

Training writes it (`offline.manifest`); the web tier reads it once per worker and asks the
model server for exactly the version listed, so a score is always judged by the threshold
calibrated for the model that produced it, even while TF Serving holds two versions during a
rollout.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from webapp.detection.features import Profile
from webapp.inference.signature import SERVED_MODELS

MANIFEST = "manifest.json"
LEARNED = ("isolation_forest", *SERVED_MODELS)  # the detectors with model artefacts
CALIBRATED = (*LEARNED, "context")  # every detector whose threshold the manifest holds
# Detectors seated only where the manifest has an entry for them: the seasonal detector can be
# calibrated only for a sensor with two days of training readings sampled slowly enough that a
# day fits in one judgement's read (`webapp.detection.seasonal`). Elsewhere it is not on the
# panel at all, rather than abstaining on every decision (which would mark each one degraded).
OPTIONAL = ("seasonal",)
PANEL = ("physical", *CALIBRATED, *OPTIONAL)  # every detector a panel may have, in ballot order: the one list
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class ManifestError(Exception):
    """Raised when the manifest is missing, unreadable or lacks a detector."""


@dataclass(frozen=True)
class ModelEntry:
    """One learned detector's live version and calibration."""

    name: str
    version: int
    threshold: float
    window_size: int
    profile: Profile
    artefact: str | None = None
    params: dict | None = None  # a model-free detector's parameters (the context and seasonal detectors)
    median: float | None = None  # the median out-of-sample calibration score (`webapp.detection.hold`)


def resolve_models_dir(models_dir: str | Path) -> Path:
    """`models_dir` as given, or relative to the project when it is relative and absent here."""
    path = Path(models_dir)
    if path.is_absolute() or path.exists():
        return path
    return PROJECT_ROOT / path


def load_manifest(models_dir: str | Path) -> dict[str, ModelEntry]:
    """The live entry of every learned detector, by name."""
    path = resolve_models_dir(models_dir) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {
            name: ModelEntry(
                name=name,
                version=int(spec["version"]),
                threshold=float(spec["threshold"]),
                window_size=int(spec["window_size"]),
                profile=Profile(**spec["profile"]),
                artefact=spec.get("artefact"),
                params=spec.get("params"),
                median=_median(spec),
            )
            for name, spec in data["models"].items()
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ManifestError(f"cannot read the model manifest {path}: {exc}") from exc


def _median(spec: dict) -> float | None:
    median = (spec.get("calibration") or {}).get("median_score")
    return None if median is None else float(median)
