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
# How long a /readyz probe waits for its answer: half of what retrying took before the fix (6 s),
# a generous bound on one 0.5 s try.
READY_WAIT_S = 3.0


def healthcheck_budget_s() -> float:
    """The web service's healthcheck timeout in docker-stack.yml (``3s``)."""
    stack = yaml.safe_load((ROOT / "docker-stack.yml").read_text())
    timeout = stack["services"]["web"]["healthcheck"]["timeout"]
    assert timeout.endswith("s") and not timeout.endswith("ms"), timeout
    return float(timeout[:-1])


def get(url: str, timeout: float = 30.0) -> int | str:
    """The status, or the error's name (``TimeoutError`` when no answer came within `timeout`)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError as exc:
        return exc.__class__.__name__


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
            return get(f"{url}/nuevo?dato=20.5&sensor=warm", timeout=5) == 201
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
            status = get(f"{url}/nuevo?dato=21.0&sensor=load-{i}")
            answers.append(status)
            if status == 503:
                time.sleep(0.05)  # a client backs off a little after a refusal

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    health: list[int | str] = []
    os.kill(redis_server.pid, signal.SIGSTOP)
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # every request thread that may wait on Redis is waiting now
        # Each probe waits as long as the stack's healthcheck does: no answer in time is a failure.
        ready = get(f"{url}/readyz", timeout=READY_WAIT_S)
        stall_ends = time.monotonic() + STALL_S - 1.0
        while time.monotonic() < stall_ends:
            health.append(get(f"{url}/healthz", timeout=budget))
            time.sleep(0.2)
    finally:
        os.kill(redis_server.pid, signal.SIGCONT)
        stop.set()
    for thread in threads:
        thread.join(40)
    print(f"\n/healthz during an {STALL_S:.0f} s Redis stall with {CLIENTS} clients on /nuevo: "
          f"{len(health)} probes with the healthcheck's {budget:.0f} s timeout: {set(health)}; /readyz {ready}")
    assert len(health) >= 5 and set(health) == {200}  # every probe answered, none timed out
    assert ready == 503  # answered "unavailable" within READY_WAIT_S, not queued behind Redis
    assert 503 in answers  # the stall was seen: refused, not queued
    wait_until(lambda: get(f"{url}/nuevo?dato=20.5&sensor=after", timeout=5) == 201, 30,
               "/nuevo to store again after the stall")
    assert get(f"{url}/readyz") == 200


def test_readyz_says_unavailable_fast_and_healthz_stays_up_while_redis_is_stalled(settings, make_redis_server):
    from webapp import create_app
    from webapp import shutdown

    redis_server = make_redis_server()
    app = create_app(settings.replace(redis_url=redis_server.url))
    client = app.test_client()
    try:
        assert client.get("/readyz").status_code == 200
        os.kill(redis_server.pid, signal.SIGSTOP)
        answers = []
        try:
            asking = threading.Thread(target=lambda: answers.append(client.get("/readyz")), daemon=True)
            asking.start()
            asking.join(READY_WAIT_S)
            answered_in_time = not asking.is_alive()
            assert client.get("/healthz").status_code == 200
        finally:
            os.kill(redis_server.pid, signal.SIGCONT)
        # One try of 0.5 s, no retry: answered within the wait (retrying took 6 s: 2 s x 3 tries).
        assert answered_in_time
        [ready] = answers
        assert ready.status_code == 503 and ready.json["checks"]["redis"].startswith("storage unavailable")
    finally:
        shutdown(app)
