"""Incidents and webhook alerts against real Redis and a real local HTTP receiver."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer

import pytest

from harness.process import free_port
from harness.process import wait_until
from webapp import create_app
from webapp import shutdown
from webapp.alerting import Incidents
from webapp.config import AlertSettings
from webapp.storage import Keys

TOPOLOGIES = ("single", "cluster")  # every test here runs on one Redis and on the Redis Cluster


class Receiver:
    """A webhook receiver on loopback that records every JSON body; it can be down."""

    def __init__(self, port: int | None = None, status: int = 200):
        self.port = port or free_port()
        self.status = status
        self.bodies: list[dict] = []
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                body = json.loads(self.rfile.read(length))
                if receiver.status < 300:
                    receiver.bodies.append(body)
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


@pytest.fixture
def receivers():
    made: list[Receiver] = []
    yield made
    for receiver in made:
        if receiver.server is not None:
            receiver.stop()


def alerting_app(settings, *receivers, **changes):
    return create_app(settings.replace(alert_urls=tuple(r.url for r in receivers), window_size=4,
                                       vote_required=1, alert_min_interval_s=0.0, **changes))


def queueing(**changes) -> AlertSettings:
    """Alert settings that queue alerts (ALERT_URLS set; no notifier delivers them here)."""
    return AlertSettings(alert_urls=("http://127.0.0.1:9/",), **changes)


def test_incident_opens_once_escalates_and_closes(redis_client, redis_prefix):
    incidents = Incidents(redis_client, Keys(redis_prefix), 3, queueing(alert_min_interval_s=0))
    body = {"kind": "decision", "sensor": "s"}
    steps = [(True, 3), (True, 3), (True, 4), (True, 3), (False, 0), (False, 0), (True, 3), (False, 0),
             (False, 0), (False, 0), (False, 0)]
    seen = [incidents.observe("s", alarm, votes, i, body) for i, (alarm, votes) in enumerate(steps)]
    assert seen == ["opened", "ongoing", "escalated", "ongoing", "ongoing", "ongoing", "ongoing",
                    "ongoing", "ongoing", "closed", "none"]
    queued = [json.loads(f["alert"]) for _, f in redis_client.xrange(incidents.stream("s"))]
    assert [(a["transition"], a["incident"]) for a in queued] == [
        ("opened", "s#1"), ("escalated", "s#1"), ("closed", "s#1")]


def test_opening_alerts_are_rate_limited_per_subject(redis_client, redis_prefix):
    incidents = Incidents(redis_client, Keys(redis_prefix), 1, queueing(alert_min_interval_s=60))
    body = {"kind": "decision", "sensor": "s"}
    for now in (0, 1_000, 2_000, 3_000):
        incidents.observe("s", now % 2000 == 0, 3, now, body)
    assert [t for t in (incidents.observe("s", True, 3, 61_000, body),)] == ["opened"]
    queued = [json.loads(f["alert"])["transition"] for _, f in redis_client.xrange(incidents.stream("s"))]
    assert queued == ["opened", "closed", "opened"]


def test_critical_verdicts_reach_every_webhook_once_with_the_evidence(settings, receivers):
    first, second = Receiver().start(), Receiver().start()
    receivers += [first, second]
    app = alerting_app(settings, first, second)
    client = app.test_client()
    try:
        for value in (20.0, 20.1, 400.0, 410.0, 20.0, 20.1, 20.0, 20.2, 20.1, 20.0, 20.1, 20.2):
            client.get(f"/detectar?dato={value}&sensor=boiler")
        wait_until(lambda: len(first.bodies) == 2 and len(second.bodies) == 2, 15, "two alerts at each receiver")
        opened, closed = first.bodies
        assert (opened["transition"], closed["transition"]) == ("opened", "closed")
        assert opened["sensor"] == "boiler" and opened["verdict"] == "critical" and opened["value"] == 400.0
        assert opened["votes"]["physical"] == {"vote": True, "score": opened["votes"]["physical"]["score"],
                                               "threshold": 1.0}
        assert opened["window"][-1] == 400.0 and "timestamp" in opened
        assert opened["text"].startswith("[OPEN] boiler critical")
        assert second.bodies == first.bodies
    finally:
        shutdown(app)


def test_a_receiver_down_for_a_while_gets_the_alert_when_back(settings, receivers):
    receiver = Receiver(status=503).start()
    receivers.append(receiver)
    app = alerting_app(settings, receiver, alert_reclaim_s=0.5, alert_backoff_s=0.05)
    keys = Keys(settings.storage.key_prefix, settings.storage.key_buckets)
    stream = keys.alerts(keys.bucket("pump"))
    try:
        app.test_client().get("/detectar?dato=20&sensor=pump")
        app.test_client().get("/detectar?dato=900&sensor=pump")
        wait_until(lambda: app.extensions["redis"].xpending(stream, "notifier")["pending"] == 1,
                   10, "the alert to stay pending while the receiver fails")
        assert receiver.bodies == []
        receiver.status = 200
        wait_until(lambda: len(receiver.bodies) == 1, 15, "the alert after the receiver is back")
        assert receiver.bodies[0]["sensor"] == "pump"
        wait_until(lambda: app.extensions["redis"].xpending(stream, "notifier")["pending"] == 0,
                   10, "the alert acknowledged")
    finally:
        shutdown(app)


def test_sensor_fault_incident_per_node(settings, receivers):
    receiver = Receiver().start()
    receivers.append(receiver)
    app = alerting_app(settings, receiver)
    client = app.test_client()
    try:
        start = time.time_ns() // 1_000_000 - 60_000
        for rnd in range(1, 10):
            faulty = 3 <= rnd <= 4
            readings = [{"node_id": "n1", "value": 20.0}, {"node_id": "n2", "value": 20.1},
                        {"node_id": "n3", "value": 80.0 if faulty else 20.05}]
            excluded = [{"node_id": "n3", "value": 80.0, "reason": "beyond 3.5 MAD"}] if faulty else []
            aggregate = {"group": "kettle", "epoch": 1, "round": rnd, "timestamp": start + rnd * 1000,
                         "value": 20.05, "readings": readings, "excluded": excluded}
            assert client.post("/api/v1/readings", json=aggregate).status_code == 201
        wait_until(lambda: len(receiver.bodies) == 2, 15, "fault opened and closed")
        assert [(b["subject"], b["transition"]) for b in receiver.bodies] == [("kettle/n3", "opened"),
                                                                            ("kettle/n3", "closed")]
        assert receiver.bodies[0]["text"].startswith("[OPEN] sensor fault kettle/n3")
    finally:
        shutdown(app)
