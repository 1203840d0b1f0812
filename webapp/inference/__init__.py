"""Inference backends for the learned detectors: TF Serving over gRPC or REST, or in process.

`make_backend(settings, models_dir)` builds the configured one, wrapped with one retry and a
circuit breaker. Every backend has ``predict(model, windows, version=None) -> scores`` and ``close()``;
only the in-process backend imports TensorFlow, and only when it first predicts.
"""
from __future__ import annotations

from pathlib import Path

from webapp.inference.resilience import CircuitBreaker
from webapp.inference.resilience import Resilient


def backend_kind(settings) -> str:
    """The configured backend: `INFERENCE_BACKEND`, else gRPC when `SERVING_HOST` is set."""
    return settings.inference.inference_backend or ("grpc" if settings.inference.serving_host else "inprocess")


def make_backend(settings, models_dir: str | Path) -> Resilient:
    """The backend `settings` ask for, with retry and circuit breaker. Connects lazily.

    `models_dir` is where the in-process backend finds the SavedModels, resolved by the caller
    (`webapp.detection.manifest.resolve_models_dir`); the remote backends ignore it.
    """
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
        from webapp.inference.inprocess import InProcessBackend

        backend = InProcessBackend(models_dir)
    return Resilient(backend, CircuitBreaker(settings.inference.breaker_failures, settings.inference.breaker_reset_s))
