"""The Keras networks of the learned detectors, and how they are trained (`ServedDetector.fit`).

Imported only where TensorFlow is wanted (training, evaluation, tests; never by a serving
worker, which scores the exported SavedModels); `offline.export` writes them for serving.
Each served model takes raw windows (input ``window``, shape ``[n, W]``, float32),
standardises them with its sensor profile inside the graph, and answers one anomaly score per
window (output ``output_0``), so every backend judges the same raw window identically.
"""
from __future__ import annotations

import numpy as np

from webapp.detection.features import Profile
from webapp.detection.features import prepare
from webapp.inference.inprocess import import_tensorflow
from webapp.inference.signature import INPUT_KEY


def _keras(seed: int):
    import_tensorflow()
    import keras

    keras.utils.set_random_seed(seed)
    return keras


def autoencoder(window_size: int, units: int, profile: Profile, seed: int):
    """A dense autoencoder (train model) and its scorer: mean squared reconstruction error."""
    keras = _keras(seed)
    ops = keras.ops
    scaled = keras.Input((window_size,), name="scaled")
    hidden = keras.layers.Dense(units, activation="tanh")(scaled)
    code = keras.layers.Dense(max(2, units // 4), activation="tanh")(hidden)
    hidden = keras.layers.Dense(units, activation="tanh")(code)
    train = keras.Model(scaled, keras.layers.Dense(window_size)(hidden), name="autoencoder")
    raw = keras.Input((window_size,), name=INPUT_KEY)
    x = (raw - profile.center) / profile.scale
    score = ops.mean(ops.square(train(x) - x), axis=1)
    return train, keras.Model(raw, score, name="autoencoder_score")


WARMUP = 3


def lstm_forecaster(window_size: int, units: int, profile: Profile, seed: int):
    """An LSTM forecasting each reading from the ones before it, and its scorer.

    The score is the largest absolute one-step forecast error over the window's readings
    after the first `WARMUP` (which give the LSTM its context), so a sudden change keeps
    its vote while it stays in the judged window, as the other detectors' do.
    """
    keras = _keras(seed)
    ops = keras.ops
    past = keras.Input((window_size - 1, 1), name="past")
    hidden = keras.layers.LSTM(units, return_sequences=True)(past)
    train = keras.Model(past, keras.layers.Dense(1)(hidden), name="lstm")
    raw = keras.Input((window_size,), name=INPUT_KEY)
    x = (raw - profile.center) / profile.scale
    forecast = train(ops.expand_dims(x[:, :-1], -1))[:, :, 0]
    error = ops.abs(forecast - x[:, 1:])[:, WARMUP - 1:]
    return train, keras.Model(raw, ops.max(error, axis=1), name="lstm_score")


def fit_network(kind: str, windows: np.ndarray, profile: Profile, units: int, epochs: int, seed: int, progress=None):
    """Train a network of `kind` on normal raw windows; returns (train model, scoring model)."""
    build = {"autoencoder": autoencoder, "lstm": lstm_forecaster}[kind]
    train, scorer = build(windows.shape[1], units, profile, seed)
    keras = _keras(seed)
    x = prepare(windows, profile)
    inputs, targets = (x, x) if kind == "autoencoder" else (x[:, :-1, None], x[:, 1:, None])
    train.compile(optimizer=keras.optimizers.Adam(learning_rate=3e-3), loss="mse")
    callbacks = [progress] if progress is not None else []
    train.fit(inputs, targets, epochs=epochs, batch_size=64, shuffle=True, verbose=0, callbacks=callbacks)
    return train, scorer
