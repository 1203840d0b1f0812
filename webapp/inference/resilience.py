"""Timeouts are the clients' job; this module adds one retry and a circuit breaker around any backend.

After `failures` consecutive unavailability errors the breaker opens: calls fail at once with
`CircuitOpen` (an abstention, not a stalled request) until `reset_s` has passed; then one trial
call is let through (half-open) and its outcome closes or reopens the circuit. Errors that a
retry cannot fix (unknown model, bad input) neither retry nor count against the server.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from webapp.inference.errors import CircuitOpen
from webapp.inference.errors import ServingUnavailable

log = logging.getLogger(__name__)


class CircuitBreaker:
    """Counts consecutive failures of one server and opens after `failures` of them.

    Examples
    --------
    >>> now = [0.0]
    >>> breaker = CircuitBreaker(failures=2, reset_s=5.0, clock=lambda: now[0])
    >>> breaker.failure(); breaker.failure(); breaker.state
    'open'
    >>> breaker.allow()
    False
    >>> now[0] = 6.0; breaker.allow(), breaker.state
    (True, 'half_open')
    >>> breaker.success(); breaker.state
    'closed'
    """

    def __init__(self, failures: int = 5, reset_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.failures = failures
        self.reset_s = reset_s
        self.clock = clock
        self._lock = threading.Lock()
        self._count = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            return "half_open" if self._trial else "open"

    def allow(self) -> bool:
        """Whether a call may go to the server now."""
        with self._lock:
            if self._opened_at is None:
                return True
            if self._trial or self.clock() - self._opened_at < self.reset_s:
                return False
            self._trial = True
            return True

    def success(self) -> None:
        with self._lock:
            self._count, self._opened_at, self._trial = 0, None, False

    def failure(self) -> None:
        with self._lock:
            self._count += 1
            if self._trial or self._count >= self.failures:
                if self._opened_at is None or self._trial:
                    log.warning("circuit opened after %d failure(s)", self._count)
                self._opened_at, self._trial = self.clock(), False


class Resilient:
    """A backend with one retry of unavailability errors and a circuit breaker.

    Parameters
    ----------
    backend
        Any object with ``predict(model, windows, version=None)`` and ``close()``.
    breaker
        The circuit breaker of that backend's server.
    retries
        Extra attempts after an unavailability error (the issue asks for one).
    """

    def __init__(self, backend, breaker: CircuitBreaker, retries: int = 1):
        self.backend = backend
        self.breaker = breaker
        self.retries = retries

    @property
    def kind(self) -> str:
        return getattr(self.backend, "kind", type(self.backend).__name__)

    def predict(self, model: str, windows: np.ndarray, version: int | None = None) -> np.ndarray:
        last: ServingUnavailable | None = None
        for _ in range(1 + self.retries):
            if not self.breaker.allow():
                if last is not None:
                    raise last
                raise CircuitOpen(f"circuit open for {self.kind} after repeated failures")
            try:
                scores = self.backend.predict(model, windows, version)
            except ServingUnavailable as exc:
                self.breaker.failure()
                last = exc
                continue
            self.breaker.success()
            return scores
        raise last

    def health(self) -> dict:
        """The backend's kind and circuit state, for /readyz and /metrics."""
        return {"backend": self.kind, "circuit": self.breaker.state}

    def close(self) -> None:
        self.backend.close()
