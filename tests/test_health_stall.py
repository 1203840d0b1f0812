"""Health under a Redis stall (issue 10, finding 10): the real web tier under gunicorn keeps
answering ``/healthz`` within the stack's healthcheck timeout while its Redis is stopped
(SIGSTOP) and clients keep every request thread busy with ``/nuevo``.

Before the fix every thread waited on Redis (2 s socket timeout, 3 tries) and ``/healthz``
queued behind them for 5.8 s: past the 3 s healthcheck timeout, so a long stall would restart
every replica at once.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from harness.process import LOOPBACK
from harness.process import ROOT
from harness.process import ServerProcess
from harness.process import free_port
from harness.process import wait_until

STALL_S = 8.0
CLIENTS = 24  # three times the 2 workers x 4 threads


def healthcheck_budget_s() -> float:
    """The web service's healthcheck timeout in docker-stack.yml (``3s``)."""
    stack = yaml.safe_load((ROOT / "docker-stack.yml").read_text())
    timeout = stack["services"]["web"]["healthcheck"]["timeout"]
    assert timeout.endswith("s") and not timeout.endswith("ms"), timeout
    return float(timeout[:-1])


def get(url: str, timeout: float = 30.0) -> tuple[int | str, float]:
    """(status or error name, seconds taken)."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
            status: int | str = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError as exc:
        status = exc.__class__.__name__
    return status, time.monotonic() - started


@pytest.fixture
def web(make_redis_server, tmp_path: Path, test_id: str):
    """gunicorn (webapp/gunicorn_conf.py, 2 gthread workers) on the test's own redis-server."""
    redis_server = make_redis_server()
    port = free_port()
    bind = f"{LOOPBACK}:{port}"
    env = dict(os.environ, AEROGUARD_ENV="local", REDIS_URL=redis_server.url, AEROGUARD_KEY_PREFIX=f"t:{test_id}:",
               GUNICORN_BIND=bind, WEB_CONCURRENCY="2", PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"))
    for name in ("GUNICORN_THREADS", "GUNICORN_WORKER_CLASS", "STORAGE_SLOTS", "REDIS_SOCKET_TIMEOUT_S", "ZK_HOSTS"):
        env.pop(name, None)
    argv = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "webapp" / "gunicorn_conf.py"), "--bind", bind,
            "webapp:create_app()"]
    process = ServerProcess("web", argv, tmp_path / "web.log", env=env, cwd=ROOT)
    process.start()
    url = f"http://{bind}"
    try:
        def up() -> bool:
            process.check_running()
            return get(f"{url}/nuevo?dato=20.5&sensor=warm", timeout=5)[0] == 201
        wait_until(up, 120, "gunicorn to store a reading", interval=0.5)
        yield url, redis_server
    finally:
        process.stop()


def test_healthz_answers_within_the_healthcheck_timeout_while_redis_is_stalled(web):
    url, redis_server = web
    budget = healthcheck_budget_s()
    stop = threading.Event()
    answers: list[int | str] = []

    def client(i: int) -> None:
        while not stop.is_set():
            status, took = get(f"{url}/nuevo?dato=21.0&sensor=load-{i}")
            answers.append(status)
            if took < 0.1:
                time.sleep(0.05)  # a client backs off a little after a quick refusal

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    health: list[float] = []
    os.kill(redis_server.pid, signal.SIGSTOP)
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # every request thread that may wait on Redis is waiting now
        ready, ready_took = get(f"{url}/readyz")
        deadline = time.monotonic() + STALL_S - 1.0
        while time.monotonic() < deadline:
            status, took = get(f"{url}/healthz")
            assert status == 200, status
            health.append(took)
            time.sleep(0.2)
    finally:
        os.kill(redis_server.pid, signal.SIGCONT)
        stop.set()
    for thread in threads:
        thread.join(40)
    print(f"\n/healthz during an {STALL_S:.0f} s Redis stall with {CLIENTS} clients on /nuevo: "
          f"{len(health)} probes, max {max(health):.3f} s, budget {budget:.0f} s; "
          f"/readyz {ready} in {ready_took:.3f} s")
    assert max(health) < budget
    assert ready == 503 and ready_took < 1.5
    assert 503 in answers  # the stall was seen: refused, not queued
    wait_until(lambda: get(f"{url}/nuevo?dato=20.5&sensor=after", timeout=5)[0] == 201, 30,
               "/nuevo to store again after the stall")
    assert get(f"{url}/readyz")[0] == 200


def test_readyz_says_unavailable_fast_and_healthz_stays_up_while_redis_is_stalled(settings, make_redis_server):
    from webapp import create_app
    from webapp import shutdown

    redis_server = make_redis_server()
    app = create_app(settings.replace(redis_url=redis_server.url))
    client = app.test_client()
    try:
        assert client.get("/readyz").status_code == 200
        os.kill(redis_server.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            ready = client.get("/readyz")
            took = time.monotonic() - started
            assert client.get("/healthz").status_code == 200
        finally:
            os.kill(redis_server.pid, signal.SIGCONT)
        assert ready.status_code == 503 and ready.json["checks"]["redis"].startswith("storage unavailable")
        assert took < 1.5, took  # one try of 0.5 s, no retry (it took 6 s: 2 s x 3 tries)
    finally:
        shutdown(app)
