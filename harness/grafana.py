"""The Grafana dashboards under grafana/dashboards/, built from one definition and the model manifest.

Two dashboards, both provisioned by docker-stack.yml:

- ``aeroguard.json`` (Redis, through the ``redis-datasource`` plugin): readings per sensor (raw,
  1-minute and 1-hour averages), each detector's score against the threshold it votes with,
  votes and verdicts over time, the anomaly and sensor-fault events of the event log, and
  critical verdicts as annotations. Those come from Prometheus: the redis-datasource plugin
  does not declare annotation support, and its queries cannot keep only critical samples
  (it passes no FILTER_BY_VALUE), so a Redis annotation would mark every verdict.
- ``aeroguard-health.json`` (Prometheus): the web tier's requests, latency and errors, and the
  edge groups' delivery, fencing and sensor faults as the web tier counts them.

Thresholds are drawn as constant lines taken from ``serving/models/manifest.json`` (and the
physical rule's fixed threshold), so retraining changes them: ``make train`` runs
``.venv/bin/python -m scripts.grafana_dashboards`` (writes `render`'s files) after training;
tests/test_grafana.py fails while the committed JSON and this definition (or the manifest) disagree.

Queries use the plugin's own query model (``type``, ``command``, ``keyName``, ``filter``,
``legend``, ``value``, ``count``), and every key or label filter goes through the dashboard
variables ``$ns`` (the ``ns`` label, AEROGUARD_KEY_PREFIX without colons), ``$prefix``
(the key prefix itself) and ``$sensor``.
"""
from __future__ import annotations

import json
from pathlib import Path

from webapp.config import StorageSettings
from webapp.detection.manifest import OPTIONAL
from webapp.detection.manifest import PANEL as DETECTORS
from webapp.detection.physical import THRESHOLD as PHYSICAL_THRESHOLD
from webapp.storage.keys import Keys

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "grafana" / "dashboards"
MANIFEST = ROOT / "serving" / "models" / "manifest.json"

REDIS = {"type": "redis-datasource", "uid": "aeroguard-redis"}
PROMETHEUS = {"type": "prometheus", "uid": "aeroguard-prometheus"}
SERIES = "app=aeroguard ns=$ns sensor=(${sensor:csv})"
VERDICT_MAPPINGS = [{"type": "value", "options": {
    "0": {"text": "normal", "color": "green", "index": 0},
    "1": {"text": "warning", "color": "orange", "index": 1},
    "2": {"text": "critical", "color": "red", "index": 2},
}}]


def thresholds(manifest: dict) -> dict[str, float]:
    """The threshold each detector votes with: the manifest's, and the physical rule's fixed one."""
    found = {"physical": PHYSICAL_THRESHOLD}
    for name, entry in manifest.get("models", {}).items():
        if name in DETECTORS and "threshold" in entry:
            found[name] = float(entry["threshold"])
    return found


def ts_target(ref: str, filter_: str, legend: str = "sensor", value: str = "") -> dict:
    target = {"refId": ref, "datasource": REDIS, "type": "timeSeries", "command": "ts.mrange",
              "filter": filter_, "legend": legend}
    if value:
        target["value"] = value
    return target


# Every key the dashboards name, built by the web tier's own `Keys` under the ``$prefix``
# variable, with the default AEROGUARD_KEY_BUCKETS (a deployment with another count regenerates
# them with `render(buckets=...)`). The event log of each kind is one stream per bucket
# (`Keys.event_log`); sensor faults have their own, so their noise cannot push decisions out.
KEYS = Keys("${prefix}", StorageSettings().key_buckets)
EVENTS_SHOWN = 500


def events_targets(keys: Keys, kind: str, count: int = EVENTS_SHOWN) -> list[dict]:
    """One target per bucket: the newest `count` entries of its stream of `kind` in the time range
    (the newest `count` of all may sit in any one bucket)."""
    return [{"refId": f"bucket{bucket}", "datasource": REDIS, "type": "command", "command": "xrevrange",
             "keyName": keys.event_log(kind, bucket), "count": count}
            for bucket in keys.all_buckets]


def prom_target(ref: str, expr: str, legend: str) -> dict:
    return {"refId": ref, "datasource": PROMETHEUS, "expr": expr, "legendFormat": legend, "range": True}


class Layout:
    """Hands out panel ids and grid positions, left to right then down, 24 columns wide."""

    def __init__(self) -> None:
        self.next_id, self.x, self.y, self.row_h = 1, 0, 0, 0

    def place(self, panel: dict, w: int, h: int) -> dict:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel = {"id": self.next_id, **panel, "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y}}
        self.next_id += 1
        self.x += w
        self.row_h = max(self.row_h, h)
        return panel


def timeseries(title: str, description: str, targets: list[dict], datasource: dict, unit: str = "",
               stepped: bool = False, threshold: float | None = None, time_from: str = "") -> dict:
    custom = {"lineInterpolation": "stepAfter" if stepped else "linear", "showPoints": "auto", "spanNulls": False}
    defaults: dict = {"custom": custom}
    if unit:
        defaults["unit"] = unit
    if threshold is not None:
        custom["thresholdsStyle"] = {"mode": "dashed"}
        defaults["thresholds"] = {"mode": "absolute", "steps": [{"color": "green", "value": None},
                                                                {"color": "red", "value": threshold}]}
    panel = {"type": "timeseries", "title": title, "description": description, "datasource": datasource,
             "targets": targets, "fieldConfig": {"defaults": defaults, "overrides": []},
             "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                         "tooltip": {"mode": "multi", "sort": "none"}}}
    if time_from:
        panel["timeFrom"] = time_from
    return panel


def events_table(title: str, description: str, kind: str, keys: Keys) -> dict:
    """A table of the event log's entries of one `kind`: every bucket's stream merged into one
    frame, the JSON ``event`` field spread into columns, newest first, the newest `EVENTS_SHOWN`."""
    return {
        "type": "table", "title": title, "description": description, "datasource": REDIS,
        "targets": events_targets(keys, kind),
        "transformations": [
            {"id": "merge", "options": {}},
            {"id": "extractFields", "options": {"source": "event", "format": "json", "replace": False,
                                                 "keepTime": False}},
            {"id": "filterByValue", "options": {"type": "include", "match": "all", "filters": [
                {"fieldName": "kind", "config": {"id": "equal", "options": {"value": kind}}}]}},
            {"id": "organize", "options": {"excludeByName": {"$streamId": True, "event": True, "window": True,
                                                             "votes": True, "quorum": True}}},
            {"id": "sortBy", "options": {"fields": {}, "sort": [{"field": "$time", "desc": True}]}},
            {"id": "limit", "options": {"limitField": EVENTS_SHOWN}},
        ],
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {"showHeader": True, "sortBy": [{"displayName": "$time", "desc": True}]},
    }


def decisions_dashboard(manifest: dict, keys: Keys = KEYS) -> dict:
    layout = Layout()
    limits = thresholds(manifest)
    versions = {name: entry.get("version") for name, entry in manifest.get("models", {}).items()}
    panels = [
        layout.place(timeseries(
            "Readings (raw)", "Every stored reading of the selected sensors (series labelled kind=reading).",
            [ts_target("A", f"{SERIES} kind=reading")], REDIS, unit="celsius"), 24, 9),
        layout.place(timeseries(
            "Readings, 1-minute averages", "The per-minute compaction, kept longer than the raw tier "
            "(MINUTE_RETENTION_DAYS). A bucket appears once the next minute's first reading closes it.",
            [ts_target("A", f"{SERIES} kind=reading_avg agg=1m")], REDIS, unit="celsius"), 12, 8),
        layout.place(timeseries(
            "Readings, 1-hour averages (last 7 days)", "The per-hour compaction (HOUR_RETENTION_DAYS).",
            [ts_target("A", f"{SERIES} kind=reading_avg agg=1h")], REDIS, unit="celsius", time_from="7d"), 12, 8),
    ]
    for name in (d for d in DETECTORS if d not in OPTIONAL or d in limits):  # seated as build_panel does
        limit = limits.get(name)
        version = f", model v{versions[name]}" if versions.get(name) is not None else ""
        title = f"Score: {name}" + (f" (threshold {limit:g}{version})" if limit is not None else "")
        description = (f"{name}'s score per window; it votes when the score is above the dashed line "
                       "(the threshold from serving/models/manifest.json, or the physical rule's fixed 1.0). "
                       "No points while the detector abstains (see the health dashboard).")
        panels.append(layout.place(timeseries(
            title, description, [ts_target("A", f"{SERIES} kind=score detector={name}")], REDIS,
            threshold=limit), 12, 8))
    panels += [
        layout.place(timeseries(
            "Votes per detector", "1 when a detector voted anomalous for the window ending at that reading.",
            [ts_target("A", f"{SERIES} kind=vote", legend="detector", value="sensor")], REDIS, stepped=True), 12, 8),
        layout.place({
            "type": "state-timeline", "title": "Verdicts",
            "description": "normal (0 votes), warning (fewer than the quorum), critical (quorum reached).",
            "datasource": REDIS, "targets": [ts_target("A", f"{SERIES} kind=verdict")],
            "fieldConfig": {"defaults": {"mappings": VERDICT_MAPPINGS, "color": {"mode": "thresholds"},
                                         "thresholds": {"mode": "absolute", "steps": [
                                             {"color": "green", "value": None}, {"color": "orange", "value": 1},
                                             {"color": "red", "value": 2}]}},
                            "overrides": []},
            "options": {"showValue": "never", "mergeValues": True, "rowHeight": 0.9,
                        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}},
        }, 12, 8),
        layout.place(events_table(
            "Anomalies (warning and critical decisions)",
            "The event log's decision entries, newest first: verdict, votes and the window judged.",
            "decision", keys), 12, 9),
        layout.place(events_table(
            "Sensor-fault events",
            "Edge nodes left out of a fused reading because they disagreed with the others.",
            "sensor_fault", keys), 12, 9),
    ]
    return {
        "uid": "aeroguard-overview",
        "title": "AeroGuard: readings and decisions",
        "description": "Why each decision was taken: readings, detector scores against their thresholds, "
                       "votes, verdicts and events, from RedisTimeSeries. Generated by "
                       "scripts/grafana_dashboards.py from harness/grafana.py; edit that, not this file.",
        "tags": ["aeroguard"],
        "editable": False,
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "10s",
        "timezone": "browser",
        "templating": {"list": [
            {"name": "ns", "label": "Namespace (ns label)", "type": "textbox", "query": "ag",
             "current": {"text": "ag", "value": "ag"},
             "description": "AEROGUARD_KEY_PREFIX without its colons (the ns label of every series)."},
            {"name": "prefix", "label": "Key prefix", "type": "textbox", "query": "ag:",
             "current": {"text": "ag:", "value": "ag:"},
             "description": "AEROGUARD_KEY_PREFIX itself (names the event log's streams "
                            f"{keys.event_log('decision', 0)}, …, one per key bucket)."},
            {"name": "sensor", "label": "Sensor", "type": "query", "datasource": REDIS,
             "query": "TS.QUERYINDEX app=aeroguard ns=$ns kind=reading",
             "regex": "/(?:^|:)s:([A-Za-z0-9_.-]+):readings$/",
             "refresh": 2, "sort": 1, "multi": True, "includeAll": True,
             "current": {"text": ["All"], "value": ["$__all"]}},
        ]},
        "annotations": {"list": [
            {"builtIn": 1, "name": "Annotations & Alerts", "type": "dashboard", "enable": True, "hide": True,
             "iconColor": "rgba(0, 211, 255, 1)", "datasource": {"type": "grafana", "uid": "-- Grafana --"}},
            {"name": "Critical verdicts", "enable": True, "iconColor": "red", "datasource": PROMETHEUS,
             "expr": 'sum(increase(aeroguard_verdicts_total{level="critical"}[1m])) > 0', "step": "1m",
             "titleFormat": "critical verdict(s)", "textFormat": "quorum of detectors voted anomalous"},
        ]},
        "panels": panels,
    }


HEALTH_PANELS = [
    # (title, description, [(expr, legend)], unit, width)
    ("Web replicas up", "Web tasks Prometheus reaches through tasks.web (5 expected).",
     [('sum(up{job="web"})', "up")], "none", 6),
    ("Requests per second by endpoint", "All answers of the web tier.",
     [("sum by (endpoint) (rate(aeroguard_request_seconds_count[$__rate_interval]))", "{{endpoint}}")], "reqps", 18),
    ("Latency p95 by endpoint", "95th percentile of the time to answer.",
     [("histogram_quantile(0.95, sum by (le, endpoint) (rate(aeroguard_request_seconds_bucket[$__rate_interval])))",
       "{{endpoint}}")], "s", 12),
    ("Error answers by status", "4xx and 5xx answers; 503 means a dependency (Redis, ZooKeeper) is down.",
     [('sum by (status) (rate(aeroguard_request_seconds_count{status=~"4..|5.."}[$__rate_interval]))',
       "{{status}}")], "reqps", 12),
    ("Readings stored by source", "source=edge is the edge leaders' aggregates: flat at zero means no "
     "edge group is delivering.",
     [("sum by (source) (rate(aeroguard_readings_stored_total[$__rate_interval]))", "{{source}}")], "reqps", 12),
    ("Rejected requests by reason", "stale_epoch: a deposed edge leader still delivering (fenced off).",
     [("sum by (reason) (rate(aeroguard_rejected_total[$__rate_interval]))", "{{reason}}")], "reqps", 12),
    ("Sensor faults", "Edge nodes left out of a fused reading, all groups (no group label: groups are "
     "named by clients); per group: the overview's sensor-fault events.",
     [("sum(increase(aeroguard_sensor_faults_total[5m]))", "faults")], "none", 8),
    ("Verdicts by level", "Decisions per 5 minutes.",
     [("sum by (level) (increase(aeroguard_verdicts_total[5m]))", "{{level}}")], "none", 8),
    ("Detector abstentions", "Ballots a detector could not give (model server down or slow).",
     [("sum by (detector) (increase(aeroguard_detector_abstentions_total[5m]))", "{{detector}}")], "none", 8),
    ("Alerts by transition and outcome", "Webhook alerts (ALERT_URLS): opened, escalated, closed; delivered or failed.",
     [("sum by (transition, outcome) (increase(aeroguard_alerts_total[1h]))", "{{transition}} {{outcome}}")],
     "none", 12),
    ("Scrape targets up", "Every target Prometheus scrapes.",
     [("up", "{{job}} {{instance}}")], "none", 12),
]


def health_dashboard() -> dict:
    layout = Layout()
    panels = []
    for title, description, queries, unit, width in HEALTH_PANELS:
        targets = [prom_target(chr(ord("A") + i), expr, legend) for i, (expr, legend) in enumerate(queries)]
        panels.append(layout.place(timeseries(title, description, targets, PROMETHEUS, unit=unit), width, 8))
    return {
        "uid": "aeroguard-health",
        "title": "AeroGuard: web and edge health",
        "description": ("The web tier's /metrics scraped by Prometheus. Generated by "
                        "scripts/grafana_dashboards.py from harness/grafana.py."),
        "tags": ["aeroguard"],
        "editable": False,
        "schemaVersion": 39,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "timezone": "browser",
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": panels,
    }


def render(manifest_path: Path = MANIFEST, buckets: int = KEYS.buckets) -> dict[str, str]:
    """File name -> JSON text of every dashboard, reading `buckets` key buckets (AEROGUARD_KEY_BUCKETS)."""
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    dashboards = {"aeroguard.json": decisions_dashboard(manifest, Keys(KEYS.prefix, buckets)),
                  "aeroguard-health.json": health_dashboard()}
    return {name: json.dumps(board, indent=2) + "\n" for name, board in dashboards.items()}
