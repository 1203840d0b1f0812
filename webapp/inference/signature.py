"""The contract of every served model, shared by the clients, the stand-in and the export.

Each model takes raw windows under `INPUT_KEY` (float32, shape ``[n, W]``) and answers one
score per window under `OUTPUT_KEY`, through the `SIGNATURE` serving signature. The model
names are the learned detectors' (`webapp.detection.manifest`); the ones TF Serving serves
are `SERVED_MODELS`. No TensorFlow here: the gRPC and REST clients stay free of it.
"""
from __future__ import annotations

SIGNATURE = "serving_default"
INPUT_KEY = "window"
OUTPUT_KEY = "output_0"
SERVED_MODELS = ("autoencoder", "lstm")  # the networks TF Serving serves (models.config)
