"""A protocol-faithful stand-in for TensorFlow Serving, for tests and local runs without Docker.

It serves the real ``models.config`` and SavedModels (``tf.saved_model.load``) over the real
protocols: gRPC with the official ``tensorflow-serving-api`` servicers (PredictionService
Predict, ModelService GetModelStatus) and REST with TF Serving's routes, JSON bodies and
status codes. It proves protocol and outputs, not the C++ server's speed. Flags mirror
``tensorflow_model_server``: ``python -m scripts.tfserving_standin --port 8500
--rest_api_port 8501 --model_config_file serving/models/models.config``.
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import socket
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path

import grpc
import numpy as np
from google.protobuf import text_format

from webapp.inference.inprocess import import_tensorflow
from webapp.inference.signature import SIGNATURE

log = logging.getLogger(__name__)

ROUTE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?::(?P<verb>predict)|/(?P<metadata>metadata))?$"
)


class ServingError(Exception):
    """An error TF Serving would answer with: a gRPC code and its HTTP status."""

    def __init__(self, code: grpc.StatusCode, http: int, message: str):
        super().__init__(message)
        self.code = code
        self.http = http


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, 404, message)


def invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, 400, message)


class Registry:
    """The servables of a ``models.config``: each model's live versions, loaded once.

    Parameters
    ----------
    config_path
        Text-format ``ModelServerConfig``.
    models_dir
        Where model folders really are when the config's ``base_path`` points into a container
        (``/models/NAME`` becomes ``models_dir/NAME``); None uses ``base_path`` as written.
    """

    def __init__(self, config_path: str | Path, models_dir: str | Path | None = None):
        from tensorflow_serving.config import model_server_config_pb2

        self.tf = import_tensorflow()
        config = text_format.Parse(Path(config_path).read_text(encoding="utf-8"),
                                   model_server_config_pb2.ModelServerConfig())
        self.servables: dict[str, dict[int, object]] = {}
        for model in config.model_config_list.config:
            base = Path(models_dir) / Path(model.base_path).name if models_dir else Path(model.base_path)
            versions = self._live_versions(base, model.model_version_policy)
            self.servables[model.name] = {v: self.tf.saved_model.load(str(base / str(v))) for v in versions}

    @staticmethod
    def _live_versions(base: Path, policy) -> list[int]:
        present = sorted(int(p.name) for p in base.iterdir() if p.name.isdigit() and (p / "saved_model.pb").exists())
        kind = policy.WhichOneof("policy_choice")
        if kind == "all":
            return present
        if kind == "specific":
            return [v for v in present if v in set(policy.specific.versions)]
        return present[-max(1, policy.latest.num_versions or 1):]

    def lookup(self, name: str, version: int | None = None):
        versions = self.servables.get(name)
        request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
        if not versions or (version is not None and version not in versions):
            raise not_found(f"Servable not found for request: {request}")
        number = max(versions) if version is None else version
        return number, versions[number]

    def predict(self, name: str, version: int | None, signature_name: str, inputs: dict) -> tuple[int, dict]:
        """Run a signature on numpy inputs; returns the version used and numpy outputs."""
        number, servable = self.lookup(name, version)
        key = signature_name or SIGNATURE
        if key not in servable.signatures:
            raise invalid(f"Serving signature name: \"{key}\" not found in signature def")
        signature = servable.signatures[key]
        expected = signature.structured_input_signature[1]
        if set(inputs) != set(expected):
            raise invalid(f"input keys {sorted(inputs)} do not match the signature's {sorted(expected)}")
        tensors = {}
        for k, spec in expected.items():
            value = np.asarray(inputs[k])
            if value.dtype == object or not spec.shape.is_compatible_with(value.shape):
                raise invalid(f"input {k!r}: expected shape {spec.shape}, got {value.shape}")
            tensors[k] = self.tf.constant(value, dtype=spec.dtype)
        try:
            outputs = signature(**tensors)
        except (self.tf.errors.InvalidArgumentError, ValueError, TypeError) as exc:
            raise invalid(str(exc)) from exc
        return number, {k: v.numpy() for k, v in outputs.items()}


def _servicers(registry: Registry, delay_s: float):
    from tensorflow_serving.apis import get_model_status_pb2
    from tensorflow_serving.apis import model_service_pb2_grpc
    from tensorflow_serving.apis import predict_pb2
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    tf = registry.tf

    class Prediction(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            time.sleep(delay_s)
            version = request.model_spec.version.value if request.model_spec.HasField("version") else None
            try:
                inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
                number, outputs = registry.predict(request.model_spec.name, version,
                                                   request.model_spec.signature_name, inputs)
            except ServingError as exc:
                context.abort(exc.code, str(exc))
            response = predict_pb2.PredictResponse()
            response.model_spec.name = request.model_spec.name
            response.model_spec.version.value = number
            response.model_spec.signature_name = request.model_spec.signature_name or SIGNATURE
            for key, value in outputs.items():
                # TF Serving answers with typed *_val fields, not tensor_content.
                proto = tf.make_tensor_proto(value)
                proto.ClearField("tensor_content")
                proto.ClearField("float_val")
                proto.float_val.extend(np.asarray(value, dtype=np.float32).ravel().tolist())
                response.outputs[key].CopyFrom(proto)
            return response

    class Models(model_service_pb2_grpc.ModelServiceServicer):
        def GetModelStatus(self, request, context):
            versions = registry.servables.get(request.model_spec.name)
            if not versions:
                context.abort(grpc.StatusCode.NOT_FOUND,
                              f"Could not find any versions of model {request.model_spec.name}")
            response = get_model_status_pb2.GetModelStatusResponse()
            for number in sorted(versions):
                status = response.model_version_status.add(version=number)
                status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
            return response

    return prediction_service_pb2_grpc, Prediction(), model_service_pb2_grpc, Models()


class RestHandler(BaseHTTPRequestHandler):
    """TF Serving's REST routes: model status, metadata and predict (row and columnar)."""

    registry: Registry
    delay_s: float = 0.0
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Without TCP_NODELAY, keep-alive answers wait ~40 ms on Nagle and delayed ACKs.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connections.add(self.request)

    def finish(self):
        super().finish()
        self.server.connections.discard(self.request)

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
        log.debug("rest: " + format, *args)

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, want_verb: bool):
        match = ROUTE.match(self.path)
        if not match or bool(match["verb"]) != want_verb:
            raise not_found(f"Malformed request: {self.command} {self.path}")
        if match["label"]:
            raise not_found(f"Unrecognized servable version label: {match['label']}")
        return match["name"], int(match["version"]) if match["version"] else None, match

    def do_GET(self):
        try:
            name, version, match = self._route(want_verb=False)
            if match["metadata"]:
                number, servable = self.registry.lookup(name, version)
                sigs = {k: {"inputs": {i: {"dtype": s.dtype.name, "shape": s.shape.as_list()}
                                       for i, s in fn.structured_input_signature[1].items()}}
                        for k, fn in servable.signatures.items()}
                body = {"model_spec": {"name": name, "signature_name": "", "version": str(number)},
                        "metadata": {"signature_def": {"signature_def": sigs}}}
            else:
                versions = self.registry.servables.get(name)
                if not versions or (version is not None and version not in versions):
                    raise not_found(f"Could not find any versions of model {name}")
                body = {"model_version_status": [
                    {"version": str(v), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
                    for v in sorted(versions) if version in (None, v)]}
            self._send(200, body)
        except ServingError as exc:
            self._send(exc.http, {"error": str(exc)})

    def do_POST(self):
        try:
            time.sleep(self.delay_s)
            name, version, _ = self._route(want_verb=True)
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"null")
            except ValueError as exc:
                raise invalid(f"JSON Parse error: {exc}") from exc
            if not isinstance(body, dict) or ("instances" in body) == ("inputs" in body):
                raise invalid("Missing 'inputs' or 'instances' key")
            number, servable = self.registry.lookup(name, version)
            signature = body.get("signature_name") or SIGNATURE
            known = signature in servable.signatures
            keys = list(servable.signatures[signature].structured_input_signature[1]) if known else []
            data = body.get("instances", body.get("inputs"))
            inputs = data if isinstance(data, dict) else {keys[0] if len(keys) == 1 else "": data}
            try:
                inputs = {k: np.asarray(v, dtype=np.float32) for k, v in inputs.items()}
            except (ValueError, TypeError) as exc:
                raise invalid(f"Failed to process element: {exc}") from exc
            _, outputs = self.registry.predict(name, number, signature, inputs)
            values = {k: v.tolist() for k, v in outputs.items()}
            single = next(iter(values.values())) if len(values) == 1 else values
            self._send(200, {"predictions": single} if "instances" in body else {"outputs": single})
        except ServingError as exc:
            self._send(exc.http, {"error": str(exc)})


class StandIn:
    """The stand-in server: gRPC and REST over one `Registry`.

    Parameters
    ----------
    registry
        The loaded models.
    grpc_port, rest_port
        Ports (0 picks a free one; see `grpc_port`/`rest_port` after `start`).
    host
        Address both listen on: loopback, but in a container image (0.0.0.0 there is the
        container's own network namespace, reached only on the stack's overlay).
    delay_s
        Added latency of every predict call (tests use it to provoke client timeouts).
    """

    def __init__(self, registry: Registry, grpc_port: int = 0, rest_port: int = 0, delay_s: float = 0.0,
                 host: str = "127.0.0.1"):
        self.registry = registry
        self.host = host
        self.grpc_port = grpc_port
        self.rest_port = rest_port
        self.delay_s = delay_s

    def start(self) -> StandIn:
        pred_mod, pred, model_mod, models = _servicers(self.registry, self.delay_s)
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        pred_mod.add_PredictionServiceServicer_to_server(pred, self._grpc)
        model_mod.add_ModelServiceServicer_to_server(models, self._grpc)
        self.grpc_port = self._grpc.add_insecure_port(f"{self.host}:{self.grpc_port}")
        self._grpc.start()
        handler = type("Handler", (RestHandler,), {"registry": self.registry, "delay_s": self.delay_s})
        self._http = ThreadingHTTPServer((self.host, self.rest_port), handler)
        self._http.daemon_threads = True
        self._http.connections = set()
        self.rest_port = self._http.server_address[1]
        self._thread = threading.Thread(target=self._http.serve_forever, name="standin-rest", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        for conn in list(self._http.connections):
            # Keep-alive connections would otherwise go on being served after "stop".
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError as exc:
                log.debug("closing a REST connection: %s", exc)
        self._thread.join(timeout=5)
        self._grpc.stop(grace=None).wait(timeout=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8500, help="gRPC port")
    parser.add_argument("--rest_api_port", type=int, default=8501)
    parser.add_argument("--host", default="127.0.0.1",
                        help="listen address (0.0.0.0 only inside a container: images/standin)")
    parser.add_argument("--model_config_file", default="serving/models/models.config")
    parser.add_argument("--models_dir", default="serving/models",
                        help="folder holding the models the config's base_paths name")
    # tensorflow_model_server's flags that docker-stack.yml passes, accepted so the same command
    # runs either server; the stand-in neither polls the config, batches nor warms up.
    for flag in ("--model_config_file_poll_wait_seconds", "--enable_batching", "--batching_parameters_file",
                 "--enable_model_warmup"):
        parser.add_argument(flag, help="accepted for tensorflow_model_server compatibility; ignored")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    server = StandIn(Registry(args.model_config_file, args.models_dir), args.port, args.rest_api_port,
                     host=args.host).start()
    log.info("TF Serving stand-in: gRPC %s:%d, REST %s:%d", args.host, server.grpc_port, args.host, server.rest_port)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    stopped.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
