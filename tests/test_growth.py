"""Unbounded growth from anyone (issue 10, finding 8): what a client sends must not grow the
metrics, push decisions out of the event log, or make reads scan everything."""
from __future__ import annotations

import json
import re
import time

import pytest

from webapp import create_app
from webapp import shutdown


def series_lines(client) -> list[str]:
    """Every sample line of ``/metrics`` (one per label set of a counter; several per histogram)."""
    text = client.get("/metrics").get_data(as_text=True)
    return [line for line in text.splitlines() if line.startswith("aeroguard_")]


def aggregate(group: str, round_: int, excluded: int = 1) -> dict:
    return {"group": group, "epoch": 1, "round": round_, "timestamp": int(time.time() * 1000), "value": 20.5,
            "readings": [{"node_id": "keep", "value": 20.5}],
            "excluded": [{"node_id": f"n{i}", "value": 99.0} for i in range(excluded)]}


def post(client, body):
    return client.post("/api/v1/readings", data=json.dumps(body, separators=(",", ":")),
                       content_type="application/json")


def test_made_up_methods_are_counted_as_other(client):
    for i in range(30):
        assert client.open("/healthz", method=f"BREW{i}").status_code == 405
    client.open("/nowhere", method="TEAPOT")
    lines = series_lines(client)
    methods = {m for line in lines for m in re.findall(r'method="([^"]*)"', line)}
    assert methods <= {"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "other"}, methods
    assert any('endpoint="unmatched",method="other",status="405"' in line for line in lines)
    assert any('endpoint="unmatched",method="other",status="404"' in line for line in lines)


def test_200_new_groups_add_no_metric_series(client):
    assert post(client, aggregate("warm-up", 1)).status_code == 201  # the endpoint's own series exist now
    before = series_lines(client)
    for batch in range(2):
        answer = post(client, [aggregate(f"made-up-{batch}-{i}", 1) for i in range(100)])
        assert answer.status_code == 201, answer.json
    after = series_lines(client)
    assert len(after) == len(before), sorted(set(after) - set(before))[:5]
    assert not any("made-up" in line for line in after)


@pytest.fixture
def strict_app(settings):
    """Quorum of one (the physical rule alone calls a reading critical) and a short event log."""
    app = create_app(settings.replace(vote_required=1, events_max=1000))
    yield app
    shutdown(app)


def test_a_hostile_post_keeps_an_earlier_critical_decision_readable(strict_app):
    client = strict_app.test_client()
    for value in (20.0, 20.1, 240.0):
        critical = client.get(f"/detectar?dato={value}&sensor=boiler").json
    assert critical["verdict"] == "critical"
    hostile = [aggregate(f"noise-{i}", 1, excluded=64) for i in range(100)]  # 6,400 exclusions
    answer = post(client, hostile)
    assert answer.status_code == 201, answer.json
    assert sum(len(r["excluded"]) for r in answer.json["results"]) == 6400
    decisions = client.get("/api/v1/anomalies?kind=decision&count=10").json["events"]
    assert [(e["sensor"], e["timestamp"], e["verdict"]) for e in decisions] == [
        ("boiler", critical["timestamp"], "critical")]
    faults = client.get("/api/v1/anomalies?kind=sensor_fault&count=1000").json["events"]
    assert 0 < len(faults) <= 64  # at most one event per (group, node), 64 per request
    assert len({(e["sensor"], e["node_id"]) for e in faults}) == len(faults)
    both = client.get("/api/v1/anomalies?count=1000").json["events"]
    assert both[-1]["kind"] == "decision" and len(both) == len(faults) + 1


def test_one_aggregate_list_of_one_group_keeps_one_event_per_node(client):
    answer = post(client, [aggregate("boiler-2", r, excluded=3) for r in range(1, 11)])
    assert answer.status_code == 201, answer.json
    faults = client.get("/api/v1/anomalies?kind=sensor_fault&sensor=boiler-2").json["events"]
    assert sorted(e["node_id"] for e in faults) == ["n0", "n1", "n2"]


def test_anomalies_of_one_sensor_read_its_own_stream_not_the_whole_log(app, client, redis_client):
    store = app.extensions["store"]
    noise = [{"kind": "decision", "sensor": "busy", "timestamp": i, "verdict": "warning"} for i in range(3500)]
    for event in noise[:3000]:
        store.record_event(event)
    rare = [store.record_event({"kind": "decision", "sensor": "rare", "timestamp": 3000 + i, "verdict": "critical"})
            for i in range(3)]
    for event in noise[3000:]:  # the rare sensor's events are not the newest
        store.record_event(event)
    store.record_event({"kind": "sensor_fault", "sensor": "rare", "timestamp": 4000, "node_id": "n1", "value": 1.0})

    def xrevrange_calls() -> int:
        return int(redis_client.info("commandstats").get("cmdstat_xrevrange", {}).get("calls", 0))

    calls = xrevrange_calls()
    body = client.get("/api/v1/anomalies?sensor=rare&kind=decision&count=100").json
    assert xrevrange_calls() - calls == 1  # the old code paged through all 3,500 entries (36 calls)
    assert body["count"] == 3 and [e["id"] for e in body["events"]] == rare[::-1]
    assert set(body["events"][0]) == {"id", "kind", "sensor", "timestamp", "verdict"}
    mixed = client.get("/api/v1/anomalies?sensor=rare").json["events"]
    assert [e["timestamp"] for e in mixed] == [4000, 3002, 3001, 3000]
    everyone = {e["id"]: e for e in client.get("/api/v1/anomalies?count=1000").json["events"]}
    assert all(everyone[e["id"]] == e for e in mixed)  # the same events under the same ids
    assert client.get("/api/v1/anomalies?sensor=nobody").json == {"count": 0, "events": [],
                                                                  "served_by": "test-replica"}


def test_sensors_come_a_page_at_a_time(client):
    names = [f"s{i:03d}" for i in range(105)]
    for name in names:
        assert client.get(f"/nuevo?dato=1.5&sensor={name}").status_code == 201
    client.get("/detectar?dato=1.6&sensor=s001")
    first = client.get("/api/v1/sensors").json
    assert first["count"] == 100 and first["next_after"] == "s099"
    assert [s["sensor"] for s in first["sensors"]] == names[:100]
    assert first["sensors"][1]["reading"]["value"] == 1.6 and "verdict" in first["sensors"][1]
    assert first["sensors"][0]["reading"]["value"] == 1.5 and "verdict" not in first["sensors"][0]
    rest = client.get("/api/v1/sensors?count=100&after=s099").json
    assert [s["sensor"] for s in rest["sensors"]] == names[100:] and "next_after" not in rest
    small = client.get("/api/v1/sensors?count=2&after=s050").json
    assert [s["sensor"] for s in small["sensors"]] == ["s051", "s052"] and small["next_after"] == "s052"
    assert client.get("/api/v1/sensors?after=s104").json["sensors"] == []
    for bad in ("count=0", "count=1001", "count=x", "after=a:b", "after="):
        assert client.get(f"/api/v1/sensors?{bad}").status_code == 400, bad
