"""Grafana checks: every provisioning file and dashboard loads, refers only to what exists, and
every Redis query of every panel has data after a short demo run through the real web tier.

Grafana cannot run here (no image for it on this machine: docs/deploy.md), so the dashboards
are checked statically and each
``redis-datasource`` query is run the way the plugin runs it (``TS.MRANGE from to
[AGGREGATION a b] WITHLABELS FILTER …``, ``XREVRANGE key end start COUNT n``, variable queries
as CLI commands) against the session Redis, filled by ``/detectar`` readings (one out of range)
and ``POST /api/v1/readings`` aggregates (some with an excluded node). The dashboards' ``$ns``
and ``$prefix`` variables are set to this module's key prefix, as an operator would for
``AEROGUARD_KEY_PREFIX``. Prometheus panels are checked with promtool and against the
metric names the web tier exposes.
"""
from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import redis
import yaml
from prometheus_client.metrics import MetricWrapperBase

from harness.grafana import render as render_dashboards
from tests.deploy_files import promtool_path
from webapp import create_app
from webapp import metrics
from webapp import shutdown
from webapp.config import Settings
from webapp.detection.physical import THRESHOLD as PHYSICAL_THRESHOLD
from webapp.storage import Keys

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
PROVISIONING = sorted((GRAFANA / "provisioning").rglob("*.yaml"))
GRAFANA_BUILTINS = {"__all", "__interval", "__interval_ms", "__rate_interval", "__range", "__range_s",
                    "__from", "__to", "__dashboard", "__user", "__org", "timeFilter", "__timeFilter"}
VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")
HOUR_MS = 3_600_000
DEMO_SPAN_MS = 4 * HOUR_MS


# --- the files ---------------------------------------------------------------------------

def _dashboard(name: str) -> dict:
    return json.loads((GRAFANA / "dashboards" / name).read_text(encoding="utf-8"))


def _datasources() -> dict[str, dict]:
    """uid -> provisioned datasource, from every file under provisioning/datasources."""
    found = {}
    for path in (GRAFANA / "provisioning" / "datasources").glob("*.yaml"):
        for source in yaml.safe_load(path.read_text(encoding="utf-8"))["datasources"]:
            assert source["uid"] not in found, f"uid {source['uid']} provisioned twice"
            found[source["uid"]] = source
    return found


def _targets(board: dict):
    """(where, target) for every panel target and annotation query of a dashboard."""
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], {"datasource": panel.get("datasource"), **target}
    for annotation in board["annotations"]["list"]:
        if not annotation.get("builtIn"):
            yield f"annotation {annotation['name']}", {"datasource": annotation["datasource"],
                                                       **annotation.get("target", {}),
                                                       **({"expr": annotation["expr"]} if "expr" in annotation else {})}


def _texts(board: dict) -> list[str]:
    """Every string Grafana interpolates variables into: queries, filters, keys, legends."""
    texts = []
    for _, target in _targets(board):
        texts += [str(target[k]) for k in ("filter", "keyName", "query", "expr", "legend", "value") if k in target]
    texts += [str(v.get("query", "")) for v in board["templating"]["list"]]
    return texts


@pytest.mark.parametrize("path", PROVISIONING, ids=lambda p: str(p.relative_to(GRAFANA)))
def test_provisioning_files_are_valid_yaml_with_api_version_1(path):
    content = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert content["apiVersion"] == 1
    assert content.get("datasources") or content.get("providers")


def test_datasources_are_redis_via_sentinel_and_prometheus():
    sources = _datasources()
    assert {s["type"] for s in sources.values()} == {"redis-datasource", "prometheus"}
    assert sum(bool(s.get("isDefault")) for s in sources.values()) == 1
    prometheus = next(s for s in sources.values() if s["type"] == "prometheus")
    assert prometheus["url"] == "http://prometheus:9090"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_valid_and_refers_only_to_provisioned_datasources(path):
    board = json.loads(path.read_text(encoding="utf-8"))
    sources = _datasources()
    assert board["uid"] and board["title"] and board["panels"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    refs = [target["datasource"] for _, target in _targets(board)]
    refs += [v["datasource"] for v in board["templating"]["list"] if "datasource" in v]
    for ref in refs:
        assert ref["uid"] in sources, f"datasource uid {ref['uid']} is not provisioned"
        assert ref["type"] == sources[ref["uid"]]["type"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_variable_used_is_defined(path):
    board = json.loads(path.read_text(encoding="utf-8"))
    defined = {v["name"] for v in board["templating"]["list"]}
    used = {m.group(1) or m.group(3) for text in _texts(board) for m in VARIABLE.finditer(text)}
    assert used - GRAFANA_BUILTINS <= defined


def test_dashboard_uids_are_unique():
    uids = [json.loads(path.read_text(encoding="utf-8"))["uid"] for path in DASHBOARDS]
    assert len(set(uids)) == len(uids) == 2


def test_dashboards_are_what_the_generator_writes():
    """The JSON is generated (thresholds come from the manifest): edit the generator, rerun it."""
    for name, text in render_dashboards().items():
        committed = GRAFANA / "dashboards" / name
        assert committed.read_text(encoding="utf-8") == text, f"run: python -m scripts.grafana_dashboards ({name})"
    assert {p.name for p in DASHBOARDS} == set(render_dashboards())


def test_score_panels_draw_the_thresholds_the_detectors_vote_with():
    manifest = json.loads((ROOT / "serving/models/manifest.json").read_text(encoding="utf-8"))
    expected = {name: entry["threshold"] for name, entry in manifest["models"].items()}
    expected["physical"] = PHYSICAL_THRESHOLD
    drawn = {}
    for panel in _dashboard("aeroguard.json")["panels"]:
        detector = re.search(r"kind=score detector=(\w+)", panel["targets"][0].get("filter", ""))
        if detector:
            steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
            drawn[detector.group(1)] = steps[-1]["value"]
            assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] != "off"
    assert drawn == pytest.approx(expected)


def test_every_dashboard_is_provisioned_by_the_stack():
    stack = yaml.safe_load((ROOT / "docker-stack.yml").read_text(encoding="utf-8"))
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/aeroguard.yaml").read_text())["providers"][0]
    grafana = stack["services"]["grafana"]
    mounted = {Path(stack["configs"][c["source"]]["file"]).resolve(): c["target"] for c in grafana["configs"]}
    for path in DASHBOARDS + PROVISIONING:
        assert path.resolve() in mounted, f"{path.relative_to(ROOT)} is not mounted into Grafana"
    for path in DASHBOARDS:
        assert str(Path(mounted[path.resolve()]).parent) == provider["options"]["path"]


# --- the demo run and the Redis queries ------------------------------------------------------

class Demo:
    """A short run through the real web tier, then the plugin's queries against its Redis."""

    def __init__(self, app, settings: Settings, started_ms: int, ended_ms: int):
        self.app = app
        self.settings = settings
        self.started_ms = started_ms
        self.ended_ms = ended_ms
        # radix v3 (the plugin's client) speaks RESP2: so does this one.
        self.redis = redis.Redis.from_url(settings.storage.redis_url, decode_responses=True, protocol=2)
        self.variables = {"ns": Keys(settings.storage.key_prefix).namespace, "prefix": settings.storage.key_prefix}

    def interpolate(self, text: str, sensors: list[str] | None = None) -> str:
        variables = {**self.variables, "sensor": sensors if sensors is not None else self.sensors()}

        def value(match: re.Match) -> str:
            name, form = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), None)
            found = variables[name]
            if isinstance(found, list):
                return ",".join(found) if form == "csv" else "{" + ",".join(found) + "}"
            return found

        return VARIABLE.sub(value, text)

    def sensors(self) -> list[str]:
        """The `sensor` variable's options: its CLI query, then its regex, as Grafana applies them."""
        variable = next(v for v in _dashboard("aeroguard.json")["templating"]["list"] if v["name"] == "sensor")
        command = self.interpolate(variable["query"], sensors=[]).split()
        keys = self.redis.execute_command(*command)
        pattern = re.compile(variable["regex"].strip("/"))
        return sorted({m.group(1) for key in keys if (m := pattern.search(key))})

    def run(self, target: dict, start_ms: int, end_ms: int, sensors: list[str] | None = None) -> list:
        """The rows the plugin would turn into frames for `target`."""
        command = target["command"]
        if command == "ts.mrange":
            args = ["TS.MRANGE", start_ms, end_ms]
            if target.get("aggregation"):
                args += ["AGGREGATION", target["aggregation"], target["bucket"]]
            args += ["WITHLABELS", "FILTER", *self.interpolate(target["filter"], sensors).split()]
            series = self.redis.execute_command(*args)
            for _, labels, _ in series:
                labels = dict(labels)
                for label in (target.get("legend"), target.get("value")):
                    assert not label or label in labels, f"label {label} missing: {labels}"
            return [sample for _, _, samples in series for sample in samples]
        if command == "ts.range":
            return self.redis.execute_command("TS.RANGE", self.interpolate(target["keyName"]), start_ms, end_ms)
        if command in ("xrange", "xrevrange"):
            key = self.interpolate(target["keyName"])
            start, end = target.get("start") or str(start_ms), target.get("end") or str(end_ms)
            bounds = (start, end) if command == "xrange" else (end, start)
            return self.redis.execute_command(command.upper(), key, *bounds, "COUNT", target.get("count", 100))
        raise AssertionError(f"no emulation for the plugin command {command!r}: add it here")

    def panel_rows(self, panel: dict, sensors: list[str] | None = None) -> list:
        """Every target's rows of `panel`, in its time range, one list."""
        return [row for target in panel["targets"] for row in self.run(target, *self.panel_range(panel), sensors)]

    def table(self, panel: dict) -> list[dict]:
        """An event table's rows as Grafana shows them: every target's stream entries merged
        (``merge``), their JSON ``event`` decoded, sorted by ``$time`` (the stream id's
        milliseconds) as ``sortBy`` says, and cut by ``limit``."""
        steps = {step["id"]: step["options"] for step in panel["transformations"]}
        assert panel["transformations"][0]["id"] == "merge", "one table from every bucket's stream"
        (order,) = steps["sortBy"]["sort"]
        assert order["field"] == "$time"
        rows = [{"$time": int(entry_id.split("-")[0]), **json.loads(fields["event"])}
                for entry_id, fields in self.panel_rows(panel)]   # redis-py pairs up the fields
        rows.sort(key=lambda row: row["$time"], reverse=order.get("desc", False))
        return rows[:steps["limit"]["limitField"]]

    def panel_range(self, panel: dict) -> tuple[int, int]:
        """The panel's time range: the dashboard's (now-6h), or the panel's own `timeFrom`."""
        span = {"6h": 6 * HOUR_MS, "7d": 7 * 24 * HOUR_MS}[panel.get("timeFrom", "6h")]
        return self.ended_ms - span, self.ended_ms


def run_demo(settings: Settings) -> Demo:
    """Readings for two sensors: `kettle` through /detectar (one out of range) and edge group
    `boiler-1` through POST /api/v1/readings over the last 4 hours (two with an excluded node).
    The caller closes ``.redis`` and shuts ``.app`` down. Also used by tests/test_stack_redis_auth.py,
    which reads the result back as Grafana's read-only Redis user."""
    app = create_app(settings)
    client = app.test_client()
    now = time.time_ns() // 1_000_000
    first = now - DEMO_SPAN_MS
    for i in range(49):
        ts = first + i * 5 * 60_000
        excluded = [{"node_id": "n3", "value": 48.0, "reason": "beyond 3.5 MAD of the median"}] if i in (20, 40) else []
        value = 20.0 + 0.2 * ((i * 7) % 5)
        body = {"group": "boiler-1", "epoch": 1, "round": i + 1, "timestamp": ts, "value": value,
                "readings": [{"node_id": "n1", "value": value - 0.1, "measured_at": ts},
                             {"node_id": "n2", "value": value + 0.1, "measured_at": ts}], "excluded": excluded}
        answer = client.post("/api/v1/readings", data=json.dumps(body), content_type="application/json")
        assert answer.status_code == 201, answer.json
    values = [20.0 + 0.1 * ((i * 3) % 7) for i in range(30)] + [400.0] + [20.2, 20.1, 20.3]
    verdicts = []
    for value in values:
        answer = client.get(f"/detectar?dato={value}&sensor=kettle")
        assert answer.status_code in (200, 201), answer.json
        verdicts.append(answer.json["verdict"])
    assert "critical" in verdicts, verdicts
    found = Demo(app, settings, first, time.time_ns() // 1_000_000 + 1000)
    found.metrics = client.get("/metrics").get_data(as_text=True)
    return found


@pytest.fixture(scope="module")
def demo(redis_server):
    settings = Settings().replace(redis_url=redis_server.url, key_prefix=f"t:{uuid.uuid4().hex}:",
                                  hostname="grafana-demo", env="test")
    found = run_demo(settings)
    yield found
    found.redis.close()
    shutdown(found.app)


def _redis_queries() -> list:
    """Every panel with a Redis query (an event table has one per key bucket: it has data when any has)."""
    board = _dashboard("aeroguard.json")
    cases = [pytest.param(panel, id=str(panel["id"])) for panel in board["panels"]
             if any(target["datasource"]["type"] == "redis-datasource" for target in panel["targets"])]
    for annotation in board["annotations"]["list"]:
        if annotation["datasource"].get("type") == "redis-datasource":
            cases.append(pytest.param({"title": annotation["name"], "targets": [annotation["target"]]},
                                      id=annotation["name"]))
    return cases


def test_the_sensor_variable_lists_every_sensor_of_the_namespace(demo):
    assert demo.sensors() == ["boiler-1", "kettle"]


@pytest.mark.parametrize("panel", _redis_queries())
def test_every_redis_panel_has_data_after_a_demo_run(demo, panel):
    assert demo.panel_rows(panel), f"{panel['title']}: no data for {panel['targets']}"


@pytest.mark.parametrize("sensor", ["kettle", "boiler-1"])
def test_raw_readings_and_scores_have_data_for_one_selected_sensor(demo, sensor):
    for panel in _dashboard("aeroguard.json")["panels"]:
        target = panel["targets"][0]
        if re.search(r"kind=(reading|score|vote|verdict)( |$)", target.get("filter", "")):
            assert demo.run(target, *demo.panel_range(panel), sensors=[sensor]), (panel["title"], sensor)


def test_verdict_panel_shows_the_critical_anomaly_and_the_event_tables_their_kinds(demo):
    board = _dashboard("aeroguard.json")
    panels = {panel["title"]: panel for panel in board["panels"]}
    verdicts = demo.run(panels["Verdicts"]["targets"][0], *demo.panel_range(panels["Verdicts"]))
    assert max(float(value) for _, value in verdicts) == 2.0
    keys = Keys(demo.settings.storage.key_prefix, demo.settings.storage.key_buckets)
    for title, kind in (("Sensor-fault events", "sensor_fault"),
                        ("Anomalies (warning and critical decisions)", "decision")):
        panel = panels[title]
        # One target per key bucket, each the web tier's own stream of that bucket.
        streams = [demo.interpolate(target["keyName"]) for target in panel["targets"]]
        assert streams == [keys.event_log(kind, bucket) for bucket in keys.all_buckets], title
        events = demo.table(panel)
        (wanted,) = (step for step in panel["transformations"] if step["id"] == "filterByValue")
        (match,) = wanted["options"]["filters"]
        assert match["fieldName"] == "kind" and match["config"]["options"]["value"] == kind
        assert [e for e in events if e["kind"] == kind], f"{title}: no {kind} event in the log"
        times = [e["$time"] for e in events]
        assert times == sorted(times, reverse=True), f"{title}: not newest first"
    (critical,) = [a for a in board["annotations"]["list"] if not a.get("builtIn")]
    assert 'level="critical"' in critical["expr"] and critical["datasource"]["type"] == "prometheus"


# --- Prometheus panels ------------------------------------------------------------------------

def _prometheus_exprs() -> list[tuple[str, str]]:
    found = []
    for path in DASHBOARDS:
        for where, target in _targets(json.loads(path.read_text(encoding="utf-8"))):
            if target["datasource"]["type"] == "prometheus":
                found.append((f"{path.name}: {where}", target["expr"]))
    return found


def test_prometheus_expressions_parse_with_promtool(tmp_path):
    exprs = _prometheus_exprs()
    assert exprs
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"aeroguard:panel_{i}", "expr": expr.replace("$__rate_interval", "1m").replace("$__interval", "1m")}
        for i, (_, expr) in enumerate(exprs)]}]}
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    result = subprocess.run([promtool_path(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_panels_use_metrics_the_web_tier_exposes(demo):
    """Every aeroguard_* metric a panel reads is exposed by /metrics, grouped only by its own labels."""
    exposed = {re.sub(r"_total$", "", name) for name in re.findall(r"^# TYPE (\w+) ", demo.metrics, re.MULTILINE)}
    declared = {collector._name: set(collector._labelnames) for collector in vars(metrics).values()
                if isinstance(collector, MetricWrapperBase)}
    for where, expr in _prometheus_exprs():
        names = set(re.findall(r"\b(aeroguard_\w+)", expr))
        families = {re.sub(r"_(bucket|count|sum|total)$", "", name) for name in names}
        for family in families:
            assert family in exposed and family in declared, f"{where}: {family} is not exposed"
        for grouping in re.findall(r"by \(([^)]*)\)", expr):
            for label in (part.strip() for part in grouping.split(",")):
                assert label == "le" or any(label in declared[f] for f in families), f"{where}: no label {label}"
