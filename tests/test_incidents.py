"""Operators see incidents, not rows: a run of critical verdicts, or of one edge node's
exclusions, is one entry of ``/api/v1/incidents`` with its start, end, peak and detectors —
tracked with or without webhooks, against the real Redis."""
from __future__ import annotations

import json
import time

import pytest

from webapp import create_app
from webapp import shutdown
from webapp.storage import Keys

TOPOLOGIES = ("single", "cluster")  # every test here runs on one Redis and on the Redis Cluster


@pytest.fixture
def app(settings):
    """Critical at one vote and a 4-reading window, so a short excursion makes an incident."""
    app = create_app(settings.replace(window_size=4, vote_required=1))
    yield app
    shutdown(app)


def incidents(client, **params) -> list[dict]:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    answer = client.get(f"/api/v1/incidents?{query}")
    assert answer.status_code == 200, answer.json
    return answer.json["incidents"]


def test_a_run_of_critical_verdicts_is_one_incident_with_start_end_peak_and_detectors(client, redis_client,
                                                                                    settings):
    for value in (20.0, 20.1, 20.0, 20.1):
        client.get(f"/detectar?dato={value}&sensor=oven")
    alarms = [client.get(f"/detectar?dato={value}&sensor=oven").json for value in (400.0, 900.0, 410.0)]
    assert all(a["verdict"] == "critical" for a in alarms)

    (live,) = incidents(client)
    assert live["state"] == "open" and live["end"] is None and live["subject"] == "oven"
    assert live["start"] == alarms[0]["timestamp"] and live["alarms"] == 3
    assert live["peak"]["value"] == 900.0 and live["peak"]["timestamp"] == alarms[1]["timestamp"]
    assert "physical" in live["detectors"]

    calm = [client.get(f"/detectar?dato={20.0 + (i % 2) / 10}&sensor=oven").json for i in range(12)]
    (closed,) = incidents(client)
    assert closed["state"] == "closed" and closed["id"] == "oven#1"
    assert closed["end"] in [c["timestamp"] for c in calm] and closed["end"] > closed["start"]
    critical = [a for a in alarms + calm if a["verdict"] == "critical"]
    assert closed["peak"]["value"] == 900.0 and closed["alarms"] == len(critical)
    decisions = client.get("/api/v1/anomalies?sensor=oven&kind=decision").json["events"]
    assert len(decisions) >= 3  # the rows are still there for the audit trail
    keys = Keys(settings.storage.key_prefix, settings.storage.key_buckets)
    assert redis_client.xlen(keys.alerts(keys.bucket("oven"))) == 0  # no webhooks configured: no alerts queued


def test_one_edge_nodes_exclusions_are_one_incident_per_node(client):
    now = time.time_ns() // 1_000_000 - 60_000
    for rnd in range(1, 14):
        faulty = 3 <= rnd <= 7
        excluded = [{"node_id": "n3", "value": 80.0 + rnd, "reason": "beyond 3.5 MAD"}] if faulty else []
        body = {"group": "kiln", "epoch": 1, "round": rnd, "timestamp": now + rnd * 1000, "value": 20.0,
                "readings": [{"node_id": "n1", "value": 20.0}, {"node_id": "n2", "value": 20.1},
                             {"node_id": "n3", "value": 80.0 + rnd if faulty else 20.0}], "excluded": excluded}
        answer = client.post("/api/v1/readings", data=json.dumps(body), content_type="application/json")
        assert answer.status_code == 201, answer.json
    faults = [i for i in incidents(client, sensor="kiln") if i["kind"] == "sensor_fault"]
    assert len(faults) == 1
    (fault,) = faults
    assert fault["subject"] == "kiln/n3" and fault["alarms"] == 5 and fault["state"] == "closed"
    assert fault["start"] == now + 3000 and fault["end"] > now + 7000
    assert len(client.get("/api/v1/anomalies?sensor=kiln&kind=sensor_fault").json["events"]) == 5


def test_incident_state_expires_and_the_filter_and_bad_input(client, redis_client, settings):
    for value in (20.0, 20.1, 20.0, 20.1, 500.0):
        client.get(f"/detectar?dato={value}&sensor=a")
    client.get("/detectar?dato=20&sensor=b")
    assert [i["subject"] for i in incidents(client, sensor="a")] == ["a"]
    assert incidents(client, sensor="b") == []
    ttl = redis_client.pttl(Keys(settings.storage.key_prefix, settings.storage.key_buckets).incident("a"))
    assert 0 < ttl <= settings.retention.retention_days * 86_400_000  # a subject that goes quiet is not kept for ever
    assert client.get("/api/v1/incidents?count=0").status_code == 400
    assert client.get("/api/v1/incidents?sensor=a*").status_code == 400
