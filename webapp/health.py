"""Liveness, readiness with each dependency's state, and the Prometheus exposition."""
from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import current_app

from webapp import metrics
from webapp.errors import StoreUnavailable
from webapp.responses import respond

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The process is alive and answering; says nothing about its dependencies."""
    return respond({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Ready when Redis (with TimeSeries) answers; lists every dependency and detector."""
    ext = current_app.extensions
    checks = {"redis": _redis_state(ext["store"])}
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
    payload, content_type = metrics.exposition(current_app.extensions["settings"].prometheus_multiproc_dir)
    response = Response(payload, content_type=content_type)
    return response
