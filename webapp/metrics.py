"""Prometheus collectors of the web tier, and the exposition for ``GET /metrics``.

Collectors live at module level (one registry per process); under gunicorn they run in
prometheus-client's multiprocess mode, set up by ``webapp/gunicorn_conf.py``.
"""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client import REGISTRY
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Histogram
from prometheus_client import generate_latest
from prometheus_client import multiprocess

REQUEST_SECONDS = Histogram(
    "aeroguard_request_seconds", "Time to answer a request, by endpoint.", ["endpoint", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
READINGS_STORED = Counter("aeroguard_readings_stored_total", "Readings stored, by source.", ["source"])
VERDICTS = Counter("aeroguard_verdicts_total", "Verdicts given, by level.", ["level"])
ABSTENTIONS = Counter(
    "aeroguard_detector_abstentions_total", "Ballots where a detector could not answer.", ["detector"]
)
# No group label: groups are named by clients, and one series per group ever posted grows without
# bound (issue 10); a group's faults are in ``/api/v1/anomalies?sensor=<group>&kind=sensor_fault``.
SENSOR_FAULTS = Counter("aeroguard_sensor_faults_total", "Edge nodes excluded from a fused reading.")
ALERTS = Counter("aeroguard_alerts_total", "Alerts by transition and outcome.", ["transition", "outcome"])
REJECTED = Counter("aeroguard_rejected_total", "Requests rejected, by reason.", ["reason"])

# Every label value comes from a fixed set, never from the client: a made-up HTTP method is
# counted as "other" (the endpoint label is the matched url rule, or "unmatched").
METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"})


def method_label(method: str) -> str:
    """`method` if it is one of `METHODS`, else ``"other"``."""
    return method if method in METHODS else "other"


def exposition(multiproc_dir: str) -> tuple[bytes, str]:
    """The text exposition of every collector (of all gunicorn workers when `multiproc_dir`)."""
    if multiproc_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiproc_dir)
    else:
        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST
