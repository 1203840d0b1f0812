"""The readings API: ``/nuevo``, ``/listar``, ``/detectar``, edge ingest and the decision log."""
from __future__ import annotations

import time

from flask import Blueprint
from flask import current_app
from flask import g
from flask import request

from webapp import metrics
from webapp.auth import check_ingest_key
from webapp.errors import BadInput
from webapp.judging import judge_newest
from webapp.judging import readings_judged
from webapp.responses import respond
from webapp.storage import DAY_MS
from webapp.storage import Stored
from webapp.validation import idempotency_key
from webapp.validation import parse_aggregate
from webapp.validation import parse_int
from webapp.validation import parse_value
from webapp.validation import sensor_id

bp = Blueprint("api", __name__)


def _ext(name: str):
    return current_app.extensions[name]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _sensor() -> str:
    return sensor_id(request.args.get("sensor", _ext("settings").detection.default_sensor))


def _store_reading(source: str, judging: int = 0) -> tuple[str, float, Stored, bool]:
    """Check the key, parse ``sensor``, ``dato`` and ``Idempotency-Key``, store the reading
    (and read the `judging` newest readings with it, `webapp.storage.Store.append_reading`):
    (sensor, value, what was stored, whether this answers a repeat of an acknowledged write)."""
    ext, args = current_app.extensions, request.args  # the hottest path: resolve each proxy once
    settings = ext["settings"]
    check_ingest_key(settings, [args.get("sensor", settings.detection.default_sensor)])
    sensor = sensor_id(args.get("sensor", settings.detection.default_sensor))
    value = parse_value(args.get("dato"))
    key = idempotency_key(request.headers.get("Idempotency-Key"))
    stored = ext["store"].append_reading(sensor, _now_ms(), value, None if key is None else f"k:{key}", judging)
    # Without a client key a duplicate is redis-py re-sending this request's own script:
    # still the first answer this client gets.
    repeat = stored.status == "duplicate" and key is not None
    if not repeat:
        metrics.READINGS_STORED.labels(source).inc()
    return sensor, value, stored, repeat


@bp.get("/nuevo")
def nuevo():
    """Store one reading: ``/nuevo?dato=21.5[&sensor=id]``."""
    sensor, value, stored, repeat = _store_reading("nuevo")
    body = {"sensor": sensor, "timestamp": stored.timestamp, "value": value}
    return respond({**body, "duplicate": True} if repeat else body, 200 if repeat else 201)


@bp.get("/listar")
def listar():
    """Readings in time order: the newest `count`, or a page from `from` (see `next_from`)."""
    settings = _ext("settings")
    sensor = _sensor()
    limits = settings.limits
    count = parse_int(request.args.get("count"), "count", limits.list_default_count, 1, limits.list_max_count)
    start = parse_int(request.args.get("from"), "from", -1, 0, 2**62)
    end = parse_int(request.args.get("to"), "to", -1, 0, 2**62)
    if start >= 0 and end >= 0 and end < start:
        raise BadInput("to must not be before from")
    paging = start >= 0
    samples = _ext("store").read_range(sensor, start if paging else "-", end if end >= 0 else "+",
                                       count, latest=not paging)
    body = {"sensor": sensor, "count": len(samples),
            "readings": [{"timestamp": t, "value": v} for t, v in samples]}
    if paging and len(samples) == count:
        body["next_from"] = samples[-1][0] + 1
    return respond(body, template="listar.html")


@bp.get("/detectar")
def detectar():
    """Store a reading, then judge the window of the newest readings ending with it."""
    panel, window_size = _ext("panel"), _ext("settings").detection.window_size
    sensor, value, stored, repeat = _store_reading("detectar", readings_judged(panel, window_size))
    store, timestamp = _ext("store"), stored.timestamp
    if repeat and store.is_judged(sensor, timestamp):
        return respond({"sensor": sensor, "timestamp": timestamp, "value": value, "duplicate": True}, 200)
    window, decision = judge_newest(store, panel, sensor, timestamp, window_size, _ext("incidents"), stored.judging)
    body = {"sensor": sensor, "timestamp": timestamp, "value": value,
            "window": list(window.values), **decision.as_dict()}
    return respond({**body, "duplicate": True} if repeat else body, 200 if repeat else 201,
                   template="detectar.html")


@bp.post("/api/v1/readings")
def ingest():
    """Aggregates from edge leaders, one object or a list; idempotent by group:epoch:round."""
    settings = _ext("settings")
    check_ingest_key(settings)
    body = request.get_json(silent=True)
    if body is None:
        raise BadInput("body must be JSON (Content-Type: application/json)")
    items = body if isinstance(body, list) else [body]
    if not items or len(items) > settings.limits.max_aggregates_per_request:
        raise BadInput(f"send 1 to {settings.limits.max_aggregates_per_request} aggregates")
    now = _now_ms()
    aggregates = [parse_aggregate(item, now, int(settings.limits.max_future_skew_s * 1000)) for item in items]
    check_ingest_key(settings, {aggregate.group for aggregate in aggregates})
    oldest = now - int(settings.retention.retention_days * DAY_MS)
    for aggregate in aggregates:  # everything is checked before anything is stored
        if aggregate.timestamp < oldest:
            raise BadInput(f"timestamp {aggregate.timestamp} is older than the retention "
                           f"({settings.retention.retention_days:g} days)")
        _ext("epochs").admit(aggregate.group, aggregate.epoch)
    _ext("store").check_owner({aggregate.group for aggregate in aggregates}, "groups")
    # One round trip stores them all; judging item k reads the window ending at its timestamp,
    # so judging each in order afterwards decides as storing and judging one by one did.
    stored = _ext("store").append_aggregates([(aggregate.group, aggregate.epoch, aggregate.round,
                                                aggregate.timestamp, aggregate.value) for aggregate in aggregates])
    results = [_ingest_one(aggregate, each) for aggregate, each in zip(aggregates, stored)]
    codes = [code for _, code in results]
    status = 409 if 409 in codes else 201 if 201 in codes else 200
    if isinstance(body, list):
        return respond({"results": [r for r, _ in results]}, status)
    return respond(results[0][0], status)


def _ingest_one(aggregate, stored: Stored) -> tuple[dict, int]:
    """Judge one stored aggregate (or re-judge a duplicate never judged); its answer and code."""
    settings, store = _ext("settings"), _ext("store")
    base = {"group": aggregate.group, "epoch": aggregate.epoch, "round": aggregate.round}
    if stored.status == "stale":
        metrics.REJECTED.labels("stale_epoch").inc()
        return {**base, "status": "stale", "error": "stale epoch", "newest_epoch": stored.newest_epoch}, 409
    if stored.status == "duplicate":
        # A retry after a lost answer may find its reading stored but never judged.
        if not store.is_judged(aggregate.group, stored.timestamp):
            judge_newest(store, _ext("panel"), aggregate.group, stored.timestamp, settings.detection.window_size,
                         _ext("incidents"))
        return {**base, "status": "duplicate", "timestamp": stored.timestamp}, 200
    metrics.READINGS_STORED.labels("edge").inc()
    _sensor_faults(aggregate, stored.timestamp)
    window, decision = judge_newest(store, _ext("panel"), aggregate.group, stored.timestamp,
                                    settings.detection.window_size, _ext("incidents"))
    return {**base, "status": "stored", "timestamp": stored.timestamp, "value": aggregate.value,
            "readings": [r.as_dict() for r in aggregate.readings],
            "excluded": [e.as_dict() for e in aggregate.excluded], **decision.as_dict()}, 201


# One request keeps at most one sensor-fault event per (group, node), and at most this many
# in all (one aggregate's worth of nodes): a list of 100 aggregates × 64 excluded nodes wrote
# 6,400 events (issue 10). Every exclusion is still counted and still feeds its node's incident.
FAULT_EVENTS_PER_REQUEST = 64


def _sensor_faults(aggregate, timestamp: int) -> None:
    """Keep excluded nodes as sensor-fault events (bounded per request), and track each node's
    fault incident."""
    store, incidents = _ext("store"), _ext("incidents")
    kept = g.setdefault("sensor_fault_events", set())
    events = []
    for excluded in aggregate.excluded:
        metrics.SENSOR_FAULTS.inc()
        event = {"kind": "sensor_fault", "sensor": aggregate.group, "timestamp": timestamp,
                 "epoch": aggregate.epoch, "round": aggregate.round, **excluded.as_dict()}
        node = (aggregate.group, excluded.node_id)
        if node not in kept and len(kept) < FAULT_EVENTS_PER_REQUEST:
            kept.add(node)
            events.append(event)
        if incidents is not None:
            incidents.observe(f"{aggregate.group}/{excluded.node_id}", True, 1, timestamp, event)
    store.record_events(events)
    if incidents is not None:
        for reading in aggregate.readings:
            if reading.node_id not in {e.node_id for e in aggregate.excluded}:
                calm = {"kind": "sensor_fault", "sensor": aggregate.group, "timestamp": timestamp,
                        "node_id": reading.node_id, "value": reading.value, "reason": "back in agreement"}
                incidents.observe(f"{aggregate.group}/{reading.node_id}", False, 0, timestamp, calm)


@bp.get("/api/v1/anomalies")
def anomalies():
    """The decision log, newest first: warning/critical verdicts and sensor-fault events."""
    count = parse_int(request.args.get("count"), "count", 100, 1, _ext("store").EVENTS_READ_MAX)
    sensor = request.args.get("sensor")
    kind = request.args.get("kind")
    if kind not in (None, "decision", "sensor_fault"):
        raise BadInput("kind must be decision or sensor_fault")
    events = _ext("store").read_events(count, sensor_id(sensor) if sensor is not None else None, kind)
    return respond({"count": len(events), "events": events}, template="anomalies.html")


@bp.get("/api/v1/incidents")
def incidents():
    """Incidents, newest first: a run of critical verdicts (or of one edge node's exclusions)
    as one entry with its start, end (None while open), peak and the detectors that voted."""
    count = parse_int(request.args.get("count"), "count", 50, 1, 1000)
    sensor = request.args.get("sensor")
    found = _ext("incidents").read(count, sensor_id(sensor) if sensor is not None else None)
    return respond({"count": len(found), "incidents": found})
