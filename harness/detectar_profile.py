"""What one ``/detectar`` costs the web worker: CPU, wall time, Redis round trips, hot functions.

`backends` starts a private redis-server and the TF Serving stand-in (`harness.tfserving_standin`)
on free loopback ports and yields the web tier's environment for them; `profile_detectar` builds
the app in this process (`webapp.create_app`, the gRPC backend, the whole panel), sends `n`
sequential ``/detectar`` requests through Flask's test client and measures them: per-request
CPU (this process, every thread: the panel's gRPC pool too) and wall time, then the same
requests again under cProfile, timed by the request thread's CPU (waits on Redis and the
stand-in cost nothing there). HTTP parsing by gunicorn is not included. Used by
``python -m scripts.bench_detection --profile N``.
"""
from __future__ import annotations

import contextlib
import cProfile
import io
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from harness.process import ROOT
from harness.process import free_ports
from harness.process import wait_until
from harness.redis_server import RedisServer

API_KEY = "bench"
HEADERS = {"Accept": "application/json", "X-API-Key": API_KEY}


@contextlib.contextmanager
def backends(backend: str = "grpc") -> Iterator[tuple[dict[str, str], Path]]:
    """A private redis-server and stand-in; yields the web tier's environment and a temp folder
    (for logs). Both are stopped on exit."""
    grpc_port, rest_port, redis_port = free_ports(3)
    env = dict(os.environ, OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2")
    with tempfile.TemporaryDirectory(prefix="ag-bench-") as tmp:
        redis_server = RedisServer(Path(tmp) / "redis", redis_port)
        redis_server.start()
        standin = None
        try:
            redis_server.wait_ready(30)
            standin = subprocess.Popen(
                [sys.executable, "-m", "scripts.tfserving_standin", "--port", str(grpc_port),
                 "--rest_api_port", str(rest_port)], cwd=ROOT, env=env,
                stdout=open(Path(tmp) / "standin.log", "w"), stderr=subprocess.STDOUT)
            yield dict(env, REDIS_URL=redis_server.url, SERVING_HOST="127.0.0.1",
                       SERVING_GRPC_PORT=str(grpc_port), SERVING_REST_PORT=str(rest_port),
                       INFERENCE_BACKEND=backend, AEROGUARD_ENV="local", API_KEYS=API_KEY), Path(tmp)
        finally:
            if standin is not None:
                standin.terminate()
                standin.wait(timeout=15)
            redis_server.stop()


class RoundTrips:
    """Counts the commands and pipelines this process sends to Redis (one send, one round trip)."""

    def __init__(self):
        self.count = 0

    @contextlib.contextmanager
    def counting(self) -> Iterator[RoundTrips]:
        from redis.connection import AbstractConnection

        original = AbstractConnection.send_packed_command

        def counted(connection, command, check_health=True):
            self.count += 1
            return original(connection, command, check_health)

        AbstractConnection.send_packed_command = counted
        try:
            yield self
        finally:
            AbstractConnection.send_packed_command = original


def profile_detectar(env: dict[str, str], n: int, top: int = 25, sensors: int = 4) -> dict:
    """Send `n` sequential ``/detectar`` in process (after a warm-up with no detector degraded)
    and return the per-request figures; prints cProfile's top `top` functions by cumulative and by
    own time."""
    from webapp import create_app
    from webapp import shutdown
    from webapp.config import Settings

    app = create_app(Settings.from_env(env))
    client = app.test_client()

    def detectar(i: int):
        answer = client.get(f"/detectar?dato={20 + 0.01 * (i % 7)}&sensor=p{i % sensors}", headers=HEADERS)
        assert answer.status_code in (200, 201), answer.get_data(as_text=True)
        return answer

    try:
        wait_until(lambda: not detectar(0).get_json()["degraded"], 180, "/detectar with no detector degraded")
        for i in range(max(50, n // 5)):  # warm every sensor's series, scripts and connections
            detectar(i)
        cpu, thread, wall = [], [], []
        trips = RoundTrips()
        with trips.counting():
            for i in range(n):
                c0, t0, w0 = time.process_time(), time.thread_time(), time.perf_counter()
                detectar(i)
                cpu.append((time.process_time() - c0) * 1000)
                thread.append((time.thread_time() - t0) * 1000)
                wall.append((time.perf_counter() - w0) * 1000)
        profiler = cProfile.Profile(time.thread_time)  # the request thread's CPU, not its waits
        profiler.enable()
        for i in range(n):
            detectar(i)
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(top)
        stats.sort_stats("tottime").print_stats(top)
        print(out.getvalue())
    finally:
        shutdown(app)
    return {"requests": n, "cpu_ms_mean": statistics.fmean(cpu), "cpu_ms_median": statistics.median(cpu),
            "thread_cpu_ms_mean": statistics.fmean(thread),
            "wall_ms_median": statistics.median(wall), "wall_ms_p99": sorted(wall)[int(0.99 * (n - 1))],
            "round_trips": trips.count / n}
