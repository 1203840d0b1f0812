"""A trained scoring network as TF Serving takes it: the SavedModel and its warm-up records.

Each export follows the serving contract of `webapp.inference.signature` (input ``window``
[n, W] float32, output ``output_0``, signature ``serving_default``); `offline.training` checks it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def export(scorer, path: str | Path) -> Path:
    """Write the scoring model as a SavedModel for TF Serving (``serving_default`` signature)."""
    path = Path(path)
    scorer.export(str(path), format="tf_saved_model", verbose=False)
    return path


WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"


def write_warmup(path: str | Path, model_name: str, window_size: int, requests: int = 8) -> Path:
    """TF Serving's warm-up records for an export: ``assets.extra/tf_serving_warmup_requests``.

    TF Serving replays them when it loads the version (``--enable_model_warmup``), so the
    first real request of a new version does not pay for graph initialisation. Each record is
    a ``PredictionLog`` with one ``serving_default`` request of a [1, `window_size`] window.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2
    from tensorflow_serving.apis import predict_pb2
    from tensorflow_serving.apis import prediction_log_pb2

    target = Path(path) / WARMUP_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(target)) as writer:
        for row in np.linspace(-1.0, 1.0, requests * window_size, dtype=np.float32).reshape(requests, window_size):
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name="serving_default"))
            request.inputs["window"].CopyFrom(tf.make_tensor_proto(row[None, :]))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return target
