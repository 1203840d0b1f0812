"""Liveness, readiness with each dependency's state, and the Prometheus exposition.

Liveness (``/healthz``) touches no dependency and must answer while Redis is stalled, within
the stack's 3 s healthcheck timeout, or every replica is restarted at once. Under gunicorn's
gthread workers a request waits for a free thread, so `Bulkhead` keeps one thread of each
worker free of storage: at most ``storage_slots`` requests (threads - 1) may wait on a
dependency at once, and once every slot has waited ``storage_stall_s`` the others are answered
503 at once instead of queueing behind them. Readiness (``/readyz``) asks Redis with its own
connection (``redis_ready_timeout_s``, no retry), so it answers 503 fast too.
"""
from __future__ import annotations

import threading
import time

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import g
from flask import request
from redis.backoff import NoBackoff
from redis.retry import Retry

from webapp import metrics
from webapp.errors import StoreUnavailable
from webapp.responses import respond
from webapp.storage import Store

bp = Blueprint("health", __name__)

# Endpoints that wait on no dependency (or, /readyz, only with a short timeout of its own).
FREE = frozenset({"health.healthz", "health.readyz", "health.prometheus", "openapi.openapi", "static",
                  "dashboard.index"})


class Bulkhead:
    """At most `slots` holders at once; a newcomer waits for a slot only while some holder is
    younger than `stall_s` (a healthy storage answers in milliseconds), else is refused at once."""

    def __init__(self, slots: int, stall_s: float):
        self.slots, self.stall_s = slots, stall_s
        self._entered: dict[object, float] = {}  # holder -> when it entered (monotonic)
        self._changed = threading.Condition()

    def enter(self) -> object | None:
        """A token to `leave` with, or None when every slot is taken by a stalled holder."""
        with self._changed:
            while len(self._entered) >= self.slots:
                patience = max(self._entered.values()) + self.stall_s - time.monotonic()
                if patience <= 0:
                    return None
                self._changed.wait(patience)
            token = object()
            self._entered[token] = time.monotonic()
            return token

    def leave(self, token: object) -> None:
        with self._changed:
            del self._entered[token]
            self._changed.notify()

    def stalled(self) -> bool:
        """Whether every slot is held, each for longer than `stall_s`."""
        with self._changed:
            return (len(self._entered) >= self.slots
                    and max(self._entered.values()) + self.stall_s <= time.monotonic())


@bp.record_once
def _set_up(state) -> None:
    ext = state.app.extensions
    settings = ext["settings"]
    from webapp import make_redis

    ext["bulkhead"] = Bulkhead(settings.storage.storage_slots, settings.storage.storage_stall_s)
    client = make_redis(settings.replace(redis_socket_timeout_s=settings.storage.redis_ready_timeout_s).storage)
    client.set_retry(Retry(NoBackoff(), 0))
    ext["readiness"] = Store(client, settings)


@bp.before_app_request
def _take_a_slot() -> None:
    if request.endpoint is None or request.endpoint in FREE:
        return
    token = current_app.extensions["bulkhead"].enter()
    if token is None:
        metrics.REJECTED.labels("storage_busy").inc()
        raise StoreUnavailable("storage busy: every storage slot of this worker is waiting on a stalled dependency")
    g.storage_slot = token


@bp.teardown_app_request
def _give_the_slot_back(exc) -> None:
    token = g.pop("storage_slot", None)
    if token is not None:
        current_app.extensions["bulkhead"].leave(token)


@bp.get("/healthz")
def healthz():
    """The process is alive and answering; touches no dependency."""
    return respond({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Ready when Redis (with TimeSeries) answers; lists every dependency and detector."""
    ext = current_app.extensions
    if ext["bulkhead"].stalled():
        redis_state = f"stalled: every storage slot waiting over {ext['settings'].storage.storage_stall_s} s"
    else:
        redis_state = _redis_state(ext["readiness"])
    checks = {"redis": redis_state}
    zk = ext.get("zk")
    checks["zookeeper"] = "not configured" if zk is None else zk.state.lower()
    panel = ext["panel"]
    detectors = panel.status()
    ready = checks["redis"] == "ok"
    degraded = sorted(name for name, state in detectors.items() if state != "ok")
    body = {"status": "ready" if ready else "unavailable", "checks": checks,
            "detectors": detectors, "degraded": degraded}
    return respond(body, 200 if ready else 503)


def _redis_state(store) -> str:
    try:
        return "ok" if store.has_timeseries() else "timeseries module missing"
    except StoreUnavailable as exc:
        return str(exc)


@bp.get("/metrics")
def prometheus():
    payload, content_type = metrics.exposition(current_app.extensions["settings"].web.prometheus_multiproc_dir)
    response = Response(payload, content_type=content_type)
    return response
