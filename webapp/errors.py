"""Errors of the web tier. Each maps to one HTTP status in `create_app`'s error handler."""
from __future__ import annotations


class WebappError(Exception):
    """Root of the web tier's errors; answered as ``{"error": message}`` with `status`."""

    status = 500

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.message = message
        self.details = details


class BadInput(WebappError):
    """Raised when a request's parameters or body are invalid; nothing was stored."""

    status = 400


class Unauthorized(WebappError):
    """Raised when an endpoint that needs an API key got none."""

    status = 401


class Forbidden(WebappError):
    """Raised when the API key given is not one of the configured keys."""

    status = 403


class NameTaken(Forbidden):
    """Raised when plain readings and an edge group would share one series name."""

    def __init__(self, name: str, kind: str):
        owner = "plain readings (/nuevo, /detectar)" if kind == "groups" else "an edge group"
        super().__init__(f"{name} is the name of a series written by {owner}: choose another name")


class QuotaReached(Forbidden):
    """Raised when a new sensor would pass the namespace's quota of series; nothing is stored."""


class UnverifiedEpoch(Forbidden):
    """Raised when an aggregate's epoch was not issued by its group's ZooKeeper election."""


class StoreUnavailable(WebappError):
    """Raised when Redis cannot be reached or refuses a write; the client should retry."""

    status = 503


class DependencyUnavailable(WebappError):
    """Raised when another dependency (ZooKeeper) is not configured or not reachable."""

    status = 503
