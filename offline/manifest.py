"""Writing the model manifest (``serving/models/manifest.json``) after training; the web tier
only reads it (`webapp.detection.manifest`).
"""
from __future__ import annotations

import json
from pathlib import Path

from webapp.detection.manifest import MANIFEST


def write_manifest(models_dir: str | Path, entries: dict[str, dict], training: dict) -> Path:
    """Write the manifest: the new live entries, and the previous ones kept as history."""
    path = Path(models_dir) / MANIFEST
    history = []
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        history = old.get("history", []) + [{"models": old.get("models", {}), "training": old.get("training", {})}]
    body = {"format": 1, "models": entries, "training": training, "history": history[-10:]}
    path.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
