"""TF Serving's gRPC API without TensorFlow: our own wire-compatible messages, called by path.

The messages (``aeroguard_tfserving_pb2``, generated from ``protos/``) keep upstream's field
numbers, so requests are byte-identical to ``tensorflow-serving-api``'s while the worker stays
free of TensorFlow. The channel is created on first use in each process (never inherited
across a fork). Every call has a deadline; gRPC status codes map to `webapp.inference.errors`.
"""
from __future__ import annotations

import os
import threading

import grpc
import numpy as np

from webapp.inference import aeroguard_tfserving_pb2 as pb
from webapp.inference.errors import InferenceError
from webapp.inference.errors import InputRejected
from webapp.inference.errors import ModelNotFound
from webapp.inference.errors import ServingTimeout
from webapp.inference.errors import ServingUnavailable
from webapp.inference.signature import INPUT_KEY
from webapp.inference.signature import OUTPUT_KEY
from webapp.inference.signature import SIGNATURE

PREDICT = "/tensorflow.serving.PredictionService/Predict"
MODEL_STATUS = "/tensorflow.serving.ModelService/GetModelStatus"

_ERRORS = {
    grpc.StatusCode.NOT_FOUND: ModelNotFound,
    grpc.StatusCode.INVALID_ARGUMENT: InputRejected,
    grpc.StatusCode.FAILED_PRECONDITION: InputRejected,
    grpc.StatusCode.DEADLINE_EXCEEDED: ServingTimeout,
    grpc.StatusCode.UNAVAILABLE: ServingUnavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ServingUnavailable,
}


def tensor(batch: np.ndarray) -> pb.TensorProto:
    """A float32 TensorProto of `batch` (``tensor_content``, as ``tf.make_tensor_proto`` writes)."""
    array = np.ascontiguousarray(batch, dtype="<f4")
    proto = pb.TensorProto(dtype=pb.DT_FLOAT, tensor_content=array.tobytes())
    proto.tensor_shape.dim.extend(pb.TensorShapeProto.Dim(size=n) for n in array.shape)
    return proto


def to_array(proto: pb.TensorProto) -> np.ndarray:
    """The values of a float TensorProto, whether in ``tensor_content`` or ``float_val``."""
    if proto.dtype not in (pb.DT_FLOAT, pb.DT_DOUBLE):
        raise InferenceError(f"unexpected output dtype {pb.DataType.Name(proto.dtype)}")
    shape = [d.size for d in proto.tensor_shape.dim]
    if proto.tensor_content:
        values = np.frombuffer(proto.tensor_content, dtype="<f4" if proto.dtype == pb.DT_FLOAT else "<f8")
    else:
        values = np.asarray(proto.float_val if proto.dtype == pb.DT_FLOAT else proto.double_val)
    count = int(np.prod(shape)) if shape else 1
    if values.size == 1 and count > 1:
        values = np.repeat(values, count)  # TF's compact encoding of a constant tensor
    return values.astype(np.float64).reshape(shape)


def predict_request(model: str, batch: np.ndarray, version: int | None = None) -> pb.PredictRequest:
    """The PredictRequest TF Serving expects for windows `batch` of `model`."""
    request = pb.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = SIGNATURE
    if version is not None:
        request.model_spec.version.value = int(version)
    request.inputs[INPUT_KEY].CopyFrom(tensor(batch))
    return request


class GrpcBackend:
    """Scores windows with TF Serving over gRPC.

    Parameters
    ----------
    target
        ``host:port`` of TF Serving's gRPC API (8500).
    timeout_s
        Deadline of each call.
    """

    kind = "grpc"

    def __init__(self, target: str, timeout_s: float = 0.25):
        self.target = target
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._channel: grpc.Channel | None = None
        self._methods: dict = {}

    def _call(self, path: str, request, response_type):
        with self._lock:
            if self._channel is None or self._pid != os.getpid():
                # A channel inherited across fork() hangs; each worker builds its own.
                # A local subchannel pool: a replacement channel must not share the failed
                # channel's connection (and its reconnect backoff) from gRPC's global pool.
                self._channel = grpc.insecure_channel(self.target, options=[("grpc.use_local_subchannel_pool", 1)])
                self._pid = os.getpid()
                self._methods = {}
            channel = self._channel
            method = self._methods.get(path)
            if method is None:
                method = self._methods[path] = channel.unary_unary(
                    path, request_serializer=type(request).SerializeToString,
                    response_deserializer=response_type.FromString)
        try:
            return method(request, timeout=self.timeout_s)
        except ValueError as exc:  # grpc: "Cannot invoke RPC on closed channel!" (close() raced us)
            raise ServingUnavailable(f"gRPC channel to {self.target} closed: {exc}") from exc
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                self._forget(channel)
            error = _ERRORS.get(exc.code(), InferenceError)
            raise error(f"gRPC {exc.code().name} from {self.target}: {exc.details()}") from exc

    def predict(self, model: str, windows: np.ndarray, version: int | None = None) -> np.ndarray:
        """Scores of raw windows (rows) from `model` at `version` (the latest when None)."""
        batch = np.atleast_2d(np.asarray(windows, dtype=np.float32))
        response = self._call(PREDICT, predict_request(model, batch, version), pb.PredictResponse)
        if OUTPUT_KEY not in response.outputs:
            raise InferenceError(f"{model} answered without {OUTPUT_KEY!r}: {sorted(response.outputs)}")
        return to_array(response.outputs[OUTPUT_KEY]).reshape(len(batch))

    def status(self, model: str) -> dict[int, str]:
        """The state of each version of `model` the server knows (``GetModelStatus``)."""
        request = pb.GetModelStatusRequest()
        request.model_spec.name = model
        response = self._call(MODEL_STATUS, request, pb.GetModelStatusResponse)
        return {s.version: pb.ModelVersionStatus.State.Name(s.state) for s in response.model_version_status}

    def _forget(self, channel: grpc.Channel) -> None:
        """Build a new channel for the next call. A channel that failed to connect waits out
        gRPC's reconnect backoff before trying again; a fresh one lets the breaker's next trial
        reach a restarted server. The old one is not closed here: other threads may be using
        it, and it closes itself once garbage."""
        with self._lock:
            if self._channel is channel:
                self._channel = None

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel = None
