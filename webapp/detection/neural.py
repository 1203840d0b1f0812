"""The autoencoder and LSTM detectors: thin clients of a served model, trainable in process.

A served detector sends the newest `window_size` raw readings to its model through an
inference backend (TF Serving over gRPC or REST, or the in-process SavedModel) and returns
the model's score. Any inference error becomes `DetectorUnavailable`, so its voter abstains
instead of failing the request. `fit` (TensorFlow needed) trains the network in process; the
training script then exports it as a new version.
"""
from __future__ import annotations

import numpy as np

from webapp.detection.base import Detector
from webapp.detection.base import DetectorUnavailable
from webapp.detection.base import Window
from webapp.detection.features import Profile
from webapp.inference.errors import InferenceError


class ServedDetector(Detector):
    """Base of the detectors whose score comes from a TensorFlow model.

    Parameters
    ----------
    window_size
        Readings per window the model takes; longer windows are cut to their newest ones.
    units
        Width of the network.
    epochs
        Training epochs of `fit`.
    seed
        Seed of the weights and of the training shuffle.
    backend
        Serves the model (see `webapp.inference`); None scores with the network `fit` built.
    model_version
        The model version to ask the backend for (None: the latest it serves).
    """

    name = "served"

    def __init__(self, window_size: int = 10, units: int = 16, epochs: int = 20, seed: int = 0,
                 backend=None, model_version: int | None = None):
        self.window_size = window_size
        self.units = units
        self.epochs = epochs
        self.seed = seed
        self.backend = backend
        self.model_version = model_version

    @classmethod
    def _unit_test_params(cls) -> dict:
        return {"window_size": 10, "units": 8, "epochs": 3, "seed": 3}

    def fit(self, windows: np.ndarray, progress=None) -> ServedDetector:
        from webapp.detection.networks import fit_network

        rows = np.atleast_2d(np.asarray(windows, dtype=np.float64))[:, -self.window_size:]
        self.profile_ = Profile.fit(rows[:, -1])
        self.train_model_, self.scorer_ = fit_network(
            self.name, rows, self.profile_, self.units, self.epochs, self.seed, progress)
        return self

    def score(self, windows: np.ndarray, period_ms: int = 1000) -> np.ndarray:
        rows = np.atleast_2d(np.asarray(windows, dtype=np.float64))[:, -self.window_size:]
        if rows.shape[1] < self.window_size:
            raise DetectorUnavailable(f"needs {self.window_size} readings, has {rows.shape[1]}")
        if self.backend is None:
            if not hasattr(self, "scorer_"):
                raise DetectorUnavailable(f"{self.name}: neither fitted nor served")
            return np.asarray(self.scorer_.predict_on_batch(rows.astype(np.float32)), dtype=np.float64)
        try:
            return self.backend.predict(self.name, rows, self.model_version)
        except InferenceError as exc:
            raise DetectorUnavailable(f"{self.name}: {exc}") from exc

    def score_one(self, window: Window) -> float:
        return float(self.score(window.array[None, :])[0])

    def state(self) -> str:
        """``ok``, or why the model cannot answer now (its backend's circuit is open)."""
        health = getattr(self.backend, "health", None)
        if not callable(health):
            return "ok"
        status = health()
        return "ok" if status["circuit"] == "closed" else f"{status['backend']} circuit {status['circuit']}"

    @property
    def version(self) -> str:
        return "unsaved" if self.model_version is None else str(self.model_version)

    def __getstate__(self) -> dict:
        # Keras models and backend connections do not pickle; the weights and profile do.
        state = {k: v for k, v in self.__dict__.items() if k not in ("train_model_", "scorer_", "backend")}
        if hasattr(self, "train_model_"):
            state["weights_"] = self.train_model_.get_weights()
        state["backend"] = None if self.backend is None or hasattr(self, "train_model_") else self.backend
        return state

    def __setstate__(self, state: dict) -> None:
        weights = state.pop("weights_", None)
        self.__dict__.update(state)
        if weights is not None:
            from webapp.detection.networks import autoencoder
            from webapp.detection.networks import lstm_forecaster

            build = autoencoder if self.name == "autoencoder" else lstm_forecaster
            self.train_model_, self.scorer_ = build(self.window_size, self.units, self.profile_, self.seed)
            self.train_model_.set_weights(weights)


class AutoencoderDetector(ServedDetector):
    """Dense autoencoder over the standardised window; the score is the mean squared error.

    It learns the level and shape of normal windows and flags windows it cannot rebuild:
    level excursions, steps, spikes and noise bursts. It fails on faults that look normal
    within one window, such as a drift slower than the normal variation, and on a stuck
    sensor at a normal level.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> normal = 20 + rng.normal(0, 0.1, (400, 10))
    >>> ae = AutoencoderDetector(epochs=5).fit(normal)
    >>> calm = Window(tuple(normal[0]), tuple(range(10)))
    >>> hot = Window(tuple(normal[0] + 3.0), tuple(range(10)))
    >>> ae.score_one(calm) < ae.score_one(hot)
    True
    """

    name = "autoencoder"


class LSTMDetector(ServedDetector):
    """LSTM forecasting the newest reading from the ones before it; the score is the error.

    It catches sudden changes (spikes, steps, noise bursts) as soon as they arrive. It fails
    on faults that stay predictable from their own recent past: a stuck sensor or a slow drift.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> normal = 20 + rng.normal(0, 0.1, (400, 10))
    >>> lstm = LSTMDetector(epochs=5).fit(normal)
    >>> calm = Window(tuple(normal[0]), tuple(range(10)))
    >>> jump = Window(tuple(normal[0][:-1]) + (22.0,), tuple(range(10)))
    >>> lstm.score_one(calm) < lstm.score_one(jump)
    True
    """

    name = "lstm"
