"""The in-process backend: the same SavedModels TF Serving serves, loaded with TensorFlow here.

This is the only module of the web tier that imports TensorFlow, and it does so on first use,
so a worker with a remote backend never pays TensorFlow's ~0.5 GB. Loaded models are cached
per process by path: a version directory never changes once written.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from webapp.inference.errors import InferenceError
from webapp.inference.errors import InputRejected
from webapp.inference.errors import ModelNotFound
from webapp.inference.signature import INPUT_KEY
from webapp.inference.signature import OUTPUT_KEY
from webapp.inference.signature import SIGNATURE

log = logging.getLogger(__name__)

_cache: dict[str, object] = {}
_cache_lock = threading.Lock()


def import_tensorflow(threads: int = 1):
    """Import TensorFlow quietly with at most `threads` threads per op pool (first call wins)."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        # TensorFlow was already initialised by an earlier caller: its pools stay as they are.
        pass
    return tf


def latest_version(model_dir: Path) -> int:
    """The highest numeric version folder under `model_dir` (TF Serving's "latest" policy)."""
    versions = [int(p.name) for p in model_dir.iterdir() if p.name.isdigit()] if model_dir.is_dir() else []
    if not versions:
        raise ModelNotFound(f"no version of {model_dir.name} under {model_dir.parent}")
    return max(versions)


def load_signature(path: Path):
    """The serving signature of the SavedModel at `path`, loaded once per process."""
    key = str(path.resolve())
    with _cache_lock:
        if key not in _cache:
            if not (path / "saved_model.pb").is_file():
                raise ModelNotFound(f"no SavedModel at {path}")
            tf = import_tensorflow()
            _cache[key] = tf.saved_model.load(key)
        return _cache[key].signatures[SIGNATURE]


def unload(models_dir: str | Path) -> int:
    """Forget the cached models under `models_dir` (evaluation trains one set per series)."""
    prefix = str(Path(models_dir).resolve())
    with _cache_lock:
        stale = [key for key in _cache if key.startswith(prefix)]
        for key in stale:
            del _cache[key]
    return len(stale)


class InProcessBackend:
    """Scores windows with SavedModels under `models_dir` (``<model>/<version>/``).

    Parameters
    ----------
    models_dir
        The folder holding one folder per model, as TF Serving's ``base_path``s.
    """

    kind = "inprocess"

    def __init__(self, models_dir: str | Path):
        self.models_dir = models_dir

    def predict(self, model: str, windows: np.ndarray, version: int | None = None) -> np.ndarray:
        """Scores of raw windows (rows) from `model` at `version` (latest when None)."""
        model_dir = Path(self.models_dir) / model
        number = latest_version(model_dir) if version is None else int(version)
        signature = load_signature(model_dir / str(number))
        tf = import_tensorflow()
        batch = np.atleast_2d(np.asarray(windows, dtype=np.float32))
        try:
            out = signature(**{INPUT_KEY: tf.constant(batch)})[OUTPUT_KEY]
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as exc:
            raise InputRejected(f"{model} rejected a {batch.shape} window: {exc}") from exc
        except tf.errors.OpError as exc:
            raise InferenceError(f"{model} failed: {exc}") from exc
        return np.asarray(out, dtype=np.float64).reshape(len(batch))

    def close(self) -> None:
        """Nothing to release: the cached models live as long as the process."""
