"""The HTTP API against a real Redis with TimeSeries: answers, storage, and bad input."""
from __future__ import annotations

import json
import time

import pytest

from conftest import snapshot
from webapp import create_app
from webapp.detection.base import Detector
from webapp.detection.base import Window
from webapp.detection.vote import Voter

TOPOLOGIES = ("single", "cluster")  # tests here run on one Redis and on the Redis Cluster, but those
# that stop a server of their own (single_redis)
NOW_MS = time.time_ns() // 1_000_000


def aggregate(**changes) -> dict:
    body = {"group": "boiler-1", "epoch": 5, "round": 1, "timestamp": NOW_MS, "value": 71.5,
            "readings": [{"node_id": "n1", "value": 71.4, "measured_at": NOW_MS},
                         {"node_id": "n2", "value": 71.6, "measured_at": NOW_MS}],
            "excluded": []}
    body.update(changes)
    return body


def test_nuevo_stores_a_reading_and_listar_returns_it(client):
    answer = client.get("/nuevo?dato=21.5&sensor=kettle")
    assert answer.status_code == 201
    assert answer.json["value"] == 21.5 and answer.json["sensor"] == "kettle"
    assert answer.json["served_by"] == "test-replica"
    assert answer.headers["X-Served-By"] == "test-replica"
    listed = client.get("/listar?sensor=kettle").json
    assert listed["readings"] == [{"timestamp": answer.json["timestamp"], "value": 21.5}]


def test_default_sensor_is_used_without_one(client):
    client.get("/nuevo?dato=3")
    assert client.get("/listar").json["sensor"] == "default"
    assert client.get("/listar").json["count"] == 1


def test_listar_returns_newest_in_time_order_and_pages_forward(client):
    stamps = [client.get(f"/nuevo?dato={v}&sensor=s").json["timestamp"] for v in range(7)]
    newest = client.get("/listar?sensor=s&count=3").json
    assert [r["value"] for r in newest["readings"]] == [4.0, 5.0, 6.0]
    page = client.get(f"/listar?sensor=s&from={stamps[0]}&count=4").json
    assert [r["value"] for r in page["readings"]] == [0.0, 1.0, 2.0, 3.0]
    rest = client.get(f"/listar?sensor=s&from={page['next_from']}&count=4").json
    assert [r["value"] for r in rest["readings"]] == [4.0, 5.0, 6.0]
    assert "next_from" not in rest
    bounded = client.get(f"/listar?sensor=s&from={stamps[1]}&to={stamps[2]}").json
    assert [r["value"] for r in bounded["readings"]] == [1.0, 2.0]


def test_detectar_judges_the_window_ending_with_the_reading(client, settings):
    for value in (20.0, 20.2, 20.1):
        client.get(f"/detectar?dato={value}&sensor=boiler")
    calm = client.get("/detectar?dato=20.3&sensor=boiler").json
    assert calm["verdict"] == "normal" and calm["anomaly"] is False
    assert calm["window"] == [20.0, 20.2, 20.1, 20.3]
    assert calm["votes"]["physical"]["vote"] is False
    assert calm["quorum"] == {"required": settings.detection.vote_required, "of": 5, "votes": 0}
    spike = client.get("/detectar?dato=140&sensor=boiler").json
    assert spike["votes"]["physical"]["vote"] is True
    assert spike["verdict"] in ("warning", "critical")
    for ballot in spike["votes"].values():
        assert set(ballot) >= {"vote", "score", "threshold"}
    assert set(spike["degraded"]) == {name for name, b in spike["votes"].items() if b["vote"] is None}


def test_detectar_window_is_bounded_by_window_size(client, settings):
    for value in range(settings.detection.window_size + 5):
        body = client.get(f"/detectar?dato={20 + value * 0.1:.1f}&sensor=w").json
    assert len(body["window"]) == settings.detection.window_size
    assert body["window"][-1] == body["value"]


def test_out_of_range_reading_is_a_recorded_decision(client):
    client.get("/detectar?dato=20&sensor=hot")
    client.get("/detectar?dato=500&sensor=hot")
    events = client.get("/api/v1/anomalies?sensor=hot").json["events"]
    assert len(events) == 1
    assert events[0]["value"] == 500.0 and events[0]["votes"]["physical"]["vote"] is True
    assert events[0]["kind"] == "decision" and events[0]["window"] == [20.0, 500.0]


def test_scores_votes_and_verdicts_are_stored_per_sensor(client, app, redis_client):
    client.get("/detectar?dato=20&sensor=v1")
    stamp = client.get("/detectar?dato=500&sensor=v1").json["timestamp"]
    ts = redis_client.ts()
    keys = app.extensions["store"].keys
    assert tuple(ts.get(keys.series("v1", "verdict"))) == (stamp, 1.0)
    assert tuple(ts.get(keys.series("v1", "vote", "physical"))) == (stamp, 1.0)
    assert ts.get(keys.series("v1", "score", "physical"))[1] > 1.0
    labels = ts.info(keys.series("v1", "score", "physical")).labels
    assert labels["detector"] == "physical" and labels["sensor"] == "v1" and labels["kind"] == "score"


def test_html_clients_get_the_verdict_in_colour(client):
    client.get("/detectar?dato=20&sensor=h")
    page = client.get("/detectar?dato=20.1&sensor=h", headers={"Accept": "text/html,*/*;q=0.8"})
    assert page.content_type.startswith("text/html")
    assert 'class="verdict normal"' in page.text and "test-replica" in page.text
    alarm = client.get("/detectar?dato=900&sensor=h", headers={"Accept": "text/html"})
    assert 'class="verdict warning"' in alarm.text or 'class="verdict critical"' in alarm.text
    assert client.get("/detectar?dato=20&sensor=h", headers={"Accept": "*/*"}).is_json


class Ingest:
    """Posts edge aggregates (flaskr's AuthActions shape)."""

    def __init__(self, client):
        self.client = client

    def post(self, body, **headers):
        return self.client.post("/api/v1/readings", data=json.dumps(body), content_type="application/json",
                                headers=headers)


@pytest.fixture
def ingest(client) -> Ingest:
    return Ingest(client)


def test_aggregate_is_stored_once_per_group_epoch_round(ingest, client):
    first = ingest.post(aggregate())
    assert first.status_code == 201 and first.json["status"] == "stored"
    assert first.json["readings"][0]["node_id"] == "n1" and "verdict" in first.json
    again = ingest.post(aggregate(value=99.0))
    assert again.status_code == 200 and again.json["status"] == "duplicate"
    assert again.json["timestamp"] == first.json["timestamp"]
    assert [r["value"] for r in client.get("/listar?sensor=boiler-1").json["readings"]] == [71.5]


def test_older_epoch_is_rejected_with_409_after_a_newer_one(ingest, client):
    assert ingest.post(aggregate(epoch=7, round=1)).status_code == 201
    stale = ingest.post(aggregate(epoch=6, round=2))
    assert stale.status_code == 409
    assert stale.json["newest_epoch"] == 7 and "error" in stale.json
    assert ingest.post(aggregate(epoch=8, round=1)).status_code == 201
    assert client.get("/listar?sensor=boiler-1").json["count"] == 2


def test_a_list_of_aggregates_reports_each(ingest):
    answer = ingest.post([aggregate(round=1), aggregate(round=2), aggregate(round=1)])
    assert answer.status_code == 201
    assert [r["status"] for r in answer.json["results"]] == ["stored", "stored", "duplicate"]
    mixed = ingest.post([aggregate(epoch=9, round=3), aggregate(epoch=4, round=4)])
    assert mixed.status_code == 409
    assert [r["status"] for r in mixed.json["results"]] == ["stored", "stale"]


def test_excluded_nodes_are_kept_as_sensor_fault_events(ingest, client):
    bad = {"node_id": "n3", "value": 140.0, "reason": "beyond 3.5 MAD of the median"}
    assert ingest.post(aggregate(excluded=[bad])).status_code == 201
    events = client.get("/api/v1/anomalies?kind=sensor_fault").json["events"]
    assert [(e["sensor"], e["node_id"], e["value"]) for e in events] == [("boiler-1", "n3", 140.0)]


def test_api_keys_guard_ingest_when_configured(settings, redis_server):
    app = create_app(settings.replace(api_keys=("old-key", "new-key")))
    ingest = Ingest(app.test_client())
    assert ingest.post(aggregate()).status_code == 401
    assert ingest.post(aggregate(), **{"X-API-Key": "guess"}).status_code == 403
    assert ingest.post(aggregate(), **{"X-API-Key": "new-key"}).status_code == 201
    assert ingest.post(aggregate(round=2), **{"X-API-Key": "old-key"}).status_code == 201
    app.extensions["redis"].close()


BAD_QUERIES = [
    ("/nuevo", "missing dato"),
    ("/nuevo?dato=", "empty dato"),
    ("/nuevo?dato=%20", "blank dato"),
    ("/nuevo?dato=abc", "not a number"),
    ("/nuevo?dato=nan", "NaN"),
    ("/nuevo?dato=NaN", "NaN capitalised"),
    ("/nuevo?dato=inf", "inf"),
    ("/nuevo?dato=-Infinity", "-inf"),
    ("/nuevo?dato=1e999", "overflows to inf"),
    ("/nuevo?dato=1_000", "underscores"),
    ("/nuevo?dato=0x10", "hex"),
    ("/nuevo?dato=%EF%BC%91%EF%BC%92", "full-width digits"),
    ("/nuevo?dato=12&sensor=bad%20id", "space in sensor"),
    ("/nuevo?dato=12&sensor=..%2Fetc", "slash in sensor"),
    ("/nuevo?dato=12&sensor=" + "a" * 65, "sensor too long"),
    ("/nuevo?dato=12&sensor=", "empty sensor"),
    ("/detectar?dato=nan", "NaN to detectar"),
    ("/detectar", "missing dato to detectar"),
    ("/detectar?dato=1e999&sensor=x", "inf to detectar"),
    ("/detectar?dato=1e308&sensor=x", "finite but beyond any sensor"),
    ("/nuevo?dato=-2e9", "below any sensor"),
    ("/listar?count=0", "count zero"),
    ("/listar?count=abc", "count not a number"),
    ("/listar?count=100000000", "count over the limit"),
    ("/listar?from=10&to=5", "to before from"),
    ("/listar?sensor=a*b", "glob in sensor"),
    ("/nuevo?dato=1&pad=" + "x" * 3000, "query string too long"),
    ("/api/v1/anomalies?kind=other", "unknown event kind"),
]


@pytest.mark.parametrize("url, why", BAD_QUERIES, ids=[why for _, why in BAD_QUERIES])
def test_bad_queries_get_400_and_change_nothing(client, redis_client, redis_prefix, url, why):
    client.get("/detectar?dato=20&sensor=x")
    before = snapshot(redis_client, redis_prefix)
    answer = client.get(url)
    assert answer.status_code == 400, why
    assert answer.is_json and answer.json["error"]
    assert snapshot(redis_client, redis_prefix) == before


BAD_BODIES = [
    ("{not json", "malformed JSON"),
    ("", "empty body"),
    ("[]", "empty list"),
    ('"text"', "a string"),
    (json.dumps([aggregate(round=i) for i in range(101)]), "too many aggregates"),
    (json.dumps({k: v for k, v in aggregate().items() if k != "epoch"}), "missing epoch"),
    (json.dumps({k: v for k, v in aggregate().items() if k != "value"}), "missing value"),
    (json.dumps(aggregate(extra=1)), "unknown field"),
    (json.dumps(aggregate(epoch="5")), "epoch as string"),
    (json.dumps(aggregate(epoch=5.5)), "epoch as float"),
    (json.dumps(aggregate(epoch=True)), "epoch as bool"),
    (json.dumps(aggregate(round=-1)), "negative round"),
    (json.dumps(aggregate(value="71")), "value as string"),
    (json.dumps(aggregate(value=None)), "value null"),
    (json.dumps(aggregate(value=float("nan"))), "value NaN"),
    (json.dumps(aggregate(value=float("inf"))), "value inf"),
    ('{"group": "g", "epoch": 1, "round": 1, "timestamp": 1, "value": 1e999}', "value 1e999"),
    (json.dumps(aggregate(value=1e308)), "value 1e308"),
    (json.dumps(aggregate(group="bad group")), "bad group id"),
    (json.dumps(aggregate(group=["g"])), "group as list"),
    (json.dumps(aggregate(timestamp=NOW_MS + 3_600_000)), "timestamp an hour ahead"),
    (json.dumps(aggregate(timestamp="now")), "timestamp as string"),
    (json.dumps(aggregate(readings="n1")), "readings not a list"),
    (json.dumps(aggregate(readings=[{"node_id": "n1"}])), "reading without value"),
    (json.dumps(aggregate(readings=[{"node_id": "n/1", "value": 1}])), "bad node id"),
    (json.dumps(aggregate(readings=[{"node_id": "n1", "value": float("nan")}])), "NaN node reading"),
    (json.dumps(aggregate(excluded=[{"node_id": "n3"}])), "excluded without value"),
    (json.dumps(aggregate(readings=[{"node_id": f"n{i}", "value": 1} for i in range(65)])), "too many nodes"),
    (json.dumps([aggregate(round=1), aggregate(round=2, value="x")]), "one bad item in a list"),
    ("x" * 300_000, "body over the size limit"),
]


@pytest.mark.parametrize("body, why", BAD_BODIES, ids=[why for _, why in BAD_BODIES])
def test_bad_aggregates_get_400_and_change_nothing(ingest, client, redis_client, redis_prefix, body, why):
    ingest.post(aggregate(round=99))
    before = snapshot(redis_client, redis_prefix)
    answer = client.post("/api/v1/readings", data=body, content_type="application/json")
    assert answer.status_code == 400, why
    assert answer.is_json and answer.json["error"]
    assert snapshot(redis_client, redis_prefix) == before


def test_non_json_content_type_is_refused(client, redis_client, redis_prefix):
    answer = client.post("/api/v1/readings", data=json.dumps(aggregate()), content_type="text/plain")
    assert answer.status_code == 400
    assert snapshot(redis_client, redis_prefix) == {}


def test_unknown_route_is_a_json_404(client):
    answer = client.get("/nope")
    assert answer.status_code == 404 and answer.json["served_by"] == "test-replica"


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["checks"]["redis"] == "ok"
    assert ready.json["detectors"]["physical"] == "ok"
    assert set(ready.json["degraded"]) == {n for n, s in ready.json["detectors"].items() if s != "ok"}


def test_metrics_expose_latency_readings_and_verdicts(client):
    client.get("/nuevo?dato=1&sensor=m")
    client.get("/detectar?dato=2&sensor=m")
    client.get("/nuevo?dato=nan")
    text = client.get("/metrics").text
    assert 'aeroguard_request_seconds_bucket{endpoint="/nuevo",le="0.001",method="GET",status="201"}' in text \
        or 'aeroguard_request_seconds_count{endpoint="/nuevo",method="GET",status="201"}' in text
    assert 'aeroguard_readings_stored_total{source="nuevo"}' in text
    assert 'aeroguard_verdicts_total{level="normal"}' in text
    assert 'aeroguard_rejected_total{reason="bad_input"}' in text


@pytest.mark.single_redis
def test_redis_down_answers_503_and_readyz_says_so(settings, make_redis_server):
    server = make_redis_server()
    app = create_app(settings.replace(redis_url=server.url, redis_socket_timeout_s=0.5))
    client = app.test_client()
    assert client.get("/nuevo?dato=1").status_code == 201
    server.stop()
    down = client.get("/nuevo?dato=2")
    assert down.status_code == 503 and "storage unavailable" in down.json["error"]
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["checks"]["redis"] != "ok"
    assert client.get("/healthz").status_code == 200
    app.extensions["redis"].close()


def test_a_detector_with_a_non_finite_score_abstains():
    class Overflowing(Detector):
        name = "overflowing"

        def score_one(self, window):
            return float("inf")

    ballot = Voter(Overflowing(), 1.0).ballot(Window((1.0,), (0,)))
    assert ballot.vote is None and ballot.reason == "score is not finite"
