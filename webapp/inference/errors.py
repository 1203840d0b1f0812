"""Errors of the inference tier. The detectors turn every one of them into an abstention."""
from __future__ import annotations


class InferenceError(Exception):
    """Root of the inference errors: the model server could not give a score."""


class ModelNotFound(InferenceError):
    """Raised when the server does not serve the model or version (HTTP 404, gRPC NOT_FOUND)."""


class InputRejected(InferenceError):
    """Raised when the server rejects the request's tensor (HTTP 400, gRPC INVALID_ARGUMENT)."""


class ServingUnavailable(InferenceError):
    """Raised when the server cannot be reached or is overloaded; worth one retry."""


class ServingTimeout(ServingUnavailable):
    """Raised when the answer does not come within the timeout (gRPC DEADLINE_EXCEEDED)."""


class CircuitOpen(InferenceError):
    """Raised without calling the server while the circuit breaker is open."""
