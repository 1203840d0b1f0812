"""``make fuzz``'s generator, short: 500 hostile requests over HTTP, no 5xx, rejections store nothing.

The full run (``make fuzz``: 10,000 requests against a private local stack under gunicorn) is
`scripts.fuzz`; here the same generator and checks (`harness.fuzz`) run against ``create_app``
served by werkzeug in a thread, on the session Redis in this test's key namespace.
"""
from __future__ import annotations

import io
import threading

import pytest
from werkzeug.serving import WSGIRequestHandler
from werkzeug.serving import make_server

from harness.fuzz import FENCED_EPOCH
from harness.fuzz import FENCED_GROUP
from harness.fuzz import Generator
from harness.fuzz import StoreState
from harness.fuzz import fuzz
from harness.process import LOOPBACK
from harness.process import wait_until
from webapp import create_app
from webapp.storage.keys import Keys


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:  # 500 access-log lines would bury failures
        pass


MAX_SENSORS = 40  # low, so the generator's sensor flood reaches it within 500 requests


@pytest.fixture
def web_url(settings, zk_hosts, test_id):
    """The app with ZooKeeper too (``/api/v1/cluster`` answers 503 without it), over HTTP."""
    app = create_app(settings.replace(zk_hosts=zk_hosts, zk_root=f"/t-{test_id}/aeroguard", max_sensors=MAX_SENSORS))
    wait_until(lambda: app.extensions["zk"].connected, 30, "the app's ZooKeeper client to connect")
    server = make_server(LOOPBACK, 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{LOOPBACK}:{server.server_port}"
    server.shutdown()
    thread.join(10)
    app.extensions["redis"].close()
    app.extensions["zk"].stop()
    app.extensions["zk"].close()


@pytest.mark.slow
def test_500_generated_requests_no_5xx_and_rejections_store_nothing(web_url, redis_client, redis_prefix, zk,
                                                                   settings):
    out = io.StringIO()
    keys = Keys(redis_prefix, settings.storage.key_buckets)
    report = fuzz(web_url, redis_client, redis_prefix, requests=500, seed=7, progress_every=250, out=out,
                  zk=zk, zk_root="/aeroguard", max_sensors=MAX_SENSORS, buckets=keys.buckets)
    assert report.violations == [], report.summary()
    assert redis_client.hget(keys.group(FENCED_GROUP, "fence"), "epoch") == str(FENCED_EPOCH)
    # MAX_SENSORS is a per-bucket share (rounded up): at most MAX_SENSORS + buckets - 1 in all,
    # and a bucket may be full while the others (and so the total) are below theirs.
    stored = [redis_client.zcard(keys.registry("sensors", bucket)) for bucket in keys.all_buckets]
    assert max(stored) == keys.share(MAX_SENSORS), stored  # the flood reached a bucket's share
    assert sum(stored) <= MAX_SENSORS + keys.buckets - 1, stored
    accepted = sum(n for code, n in report.statuses.items() if code < 400)
    assert accepted > 50 and report.sent - accepted > 250, report.summary()
    assert any(key.endswith(":readings") for key in StoreState(redis_client, redis_prefix).take())


def test_generator_is_seeded_and_covers_every_endpoint():
    first = [Generator(3).next() for _ in range(1)]
    gen_a, gen_b = Generator(3), Generator(3)
    paths_a = [gen_a.next().path.split("?")[0] for _ in range(400)]
    paths_b = [gen_b.next().path.split("?")[0] for _ in range(400)]
    assert paths_a == paths_b and first
    for endpoint in ("/nuevo", "/detectar", "/listar", "/api/v1/readings", "/api/v1/anomalies", "/api/v1/sensors",
                     "/api/v1/config", "/healthz", "/readyz", "/metrics", "/openapi.json", "/api/v1/cluster"):
        assert endpoint in paths_a, endpoint
