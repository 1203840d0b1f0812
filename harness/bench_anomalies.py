"""``/api/v1/anomalies?sensor=`` against a full event log (``python -m scripts.bench_anomalies``).

Starts a private redis-server (TimeSeries) on a free loopback port, writes 16,000 events
(decisions and sensor faults of 50 busy sensors, and 16 of one rare sensor spread through the
log) with ``Store.record_event``, then times 100 ``GET /api/v1/anomalies?sensor=rare`` through
the app (Flask test client, no HTTP) and, for comparison, the same for a busy sensor and for no
sensor. Prints p50/p99/max in ms. Only the web tier's public APIs are used, so the same
benchmark measures an older checkout's ``webapp`` (``PYTHONPATH=<checkout>``) for a before/after
figure; it prints which ``webapp`` it measured.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from harness.process import free_port
from harness.redis_server import RedisServer


def fill(store, events: int, rare_every: int) -> None:
    for i in range(events):
        sensor = "rare" if i % rare_every == rare_every // 2 else f"busy-{i % 50}"
        kind = "decision" if i % 5 == 0 else "sensor_fault"
        event = {"kind": kind, "sensor": sensor, "timestamp": 1_700_000_000_000 + i, "value": 20.0 + i % 7}
        event.update({"verdict": "warning"} if kind == "decision" else {"node_id": f"n{i % 3}", "reason": "bench"})
        store.record_event(event)


def timed(client, path: str, queries: int) -> dict:
    took = []
    for _ in range(queries):
        started = time.perf_counter()
        answer = client.get(path)
        took.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, answer.get_data(as_text=True)
    took.sort()
    return {"p50": statistics.median(took), "p99": took[max(0, round(0.99 * len(took)) - 1)], "max": took[-1],
            "count": answer.get_json()["count"]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench_anomalies", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=16_000)
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args(argv)

    from webapp import create_app
    from webapp import shutdown
    from webapp.config import Settings

    with tempfile.TemporaryDirectory(prefix="aeroguard-bench-anomalies-") as state:
        server = RedisServer(Path(state), free_port())
        server.start()
        try:
            server.wait_ready(60)
            app = create_app(Settings().replace(redis_url=server.url, key_prefix="bench:", hostname="bench",
                                                env="test"))
            try:
                started = time.monotonic()
                fill(app.extensions["store"], args.events, rare_every=args.events // 16)
                print(f"{args.events} events written in {time.monotonic() - started:.1f} s "
                      f"(webapp from {sys.modules['webapp'].__file__})")
                client = app.test_client()
                for label, path in (("rare sensor", "/api/v1/anomalies?sensor=rare"),
                                    ("busy sensor", "/api/v1/anomalies?sensor=busy-7"),
                                    ("no sensor", "/api/v1/anomalies")):
                    r = timed(client, path, args.queries)
                    print(f"{label:12s} {path:38s} {args.queries} queries: p50 {r['p50']:.2f} ms, "
                          f"p99 {r['p99']:.2f} ms, max {r['max']:.2f} ms ({r['count']} events each)")
            finally:
                shutdown(app)
        finally:
            server.stop()
    return 0
