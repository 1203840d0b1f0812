"""Trained models kept between evaluation runs, under a key of everything they depend on:
the baseline readings, the training plan and what the training code computes.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
# The code the trained models depend on, wherever it lives (`training_logic` ignores the module);
# the context detector is calibrated by training, so its manifest entry depends on context.py.
TRAINING_CODE = ("offline/training.py", "offline/export.py", "webapp/detection/networks.py",
                 "webapp/detection/neural.py", "webapp/detection/iforest.py", "webapp/detection/features.py",
                 "webapp/detection/context.py")


def trained_models(base: np.ndarray, plan, name: str, scratch: Path, cache: Path | None) -> Path:
    """A models folder trained on `base` with `plan`: from `cache` when the same baseline, plan and
    training code were trained before (training is seeded, so the models would be the same)."""
    import hashlib
    from dataclasses import asdict

    from offline.training import train_detectors

    if cache is None:
        train_detectors(base, scratch, plan, source=name, cli_check=False)
        return scratch
    files = [ROOT / f for f in TRAINING_CODE]
    key = hashlib.sha256(np.ascontiguousarray(base).tobytes() + json.dumps(asdict(plan), sort_keys=True).encode()
                         + training_logic(files).encode())
    folder = cache / key.hexdigest()[:20]
    if not (folder / "manifest.json").exists():
        cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="staging-", dir=cache))
        train_detectors(base, staging, plan, source=name, cli_check=False)
        if folder.exists():  # another run trained the same models meanwhile
            shutil.rmtree(staging)
        else:
            staging.rename(folder)
    return folder


def training_logic(files: list[Path]) -> str:
    """What the training code computes, independent of where it lives: every top-level function,
    class and constant of `files`, without imports, docstrings or comments, in a fixed order. A
    cache key over it survives moving code between modules, and changes with any edit that
    could change a trained model.

    >>> import tempfile; d = Path(tempfile.mkdtemp())
    >>> _ = (d / "a.py").write_text("'doc'\\nimport os\\ndef f():\\n    'x'\\n    import re\\n    return 1\\n")
    >>> _ = (d / "b.py").write_text("def f():\\n    return 1  # moved\\n")
    >>> training_logic([d / "a.py"]) == training_logic([d / "b.py"])
    True
    """
    import ast

    parts = []
    for path in files:
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)) or (
                    isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
                continue
            for inner in ast.walk(node):
                body = getattr(inner, "body", None)
                if isinstance(body, list):
                    inner.body = [n for n in body if not isinstance(n, (ast.Import, ast.ImportFrom))
                                  and not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)
                                           and isinstance(n.value.value, str))] or [ast.Pass()]
            parts.append(ast.unparse(node))
    return "\n".join(sorted(parts))
