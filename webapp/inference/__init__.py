"""Inference backends for the learned detectors: TF Serving over gRPC or REST, or in process.

`make_backend(settings)` builds the configured one, wrapped with one retry and a circuit
breaker. Every backend has ``predict(model, windows, version=None) -> scores`` and ``close()``;
only the in-process backend imports TensorFlow, and only when it first predicts.
"""
from __future__ import annotations

from webapp.inference.resilience import CircuitBreaker
from webapp.inference.resilience import Resilient


def backend_kind(settings) -> str:
    """The configured backend: `INFERENCE_BACKEND`, else gRPC when `SERVING_HOST` is set."""
    return settings.inference.inference_backend or ("grpc" if settings.inference.serving_host else "inprocess")


def make_backend(settings) -> Resilient:
    """The backend `settings` ask for, with retry and circuit breaker. Connects lazily."""
    kind = backend_kind(settings)
    host = settings.inference.serving_host or "127.0.0.1"
    if kind == "grpc":
        from webapp.inference.grpc_client import GrpcBackend

        backend = GrpcBackend(f"{host}:{settings.inference.serving_grpc_port}", settings.inference.inference_timeout_s)
    elif kind == "rest":
        from webapp.inference.rest_client import RestBackend

        backend = RestBackend(f"http://{host}:{settings.inference.serving_rest_port}",
                              settings.inference.inference_timeout_s)
    else:
        from webapp.detection.manifest import resolve_models_dir
        from webapp.inference.inprocess import InProcessBackend

        backend = InProcessBackend(resolve_models_dir(settings.inference.models_dir))
    return Resilient(backend, CircuitBreaker(settings.inference.breaker_failures, settings.inference.breaker_reset_s))
