"""gunicorn's ``worker_exit`` hook (webapp/gunicorn_conf.py) runs `webapp.shutdown` in each worker.

Without it the alert notifier was cut off mid-webhook and the ZooKeeper session was left to
expire when a worker stopped; with it each worker stops its app's clients as it exits.
"""
from __future__ import annotations

import os
import re
import sys
import urllib.request

from harness.process import LOOPBACK
from harness.process import ROOT
from harness.process import ServerProcess
from harness.process import free_port
from harness.process import wait_until


def test_each_worker_stops_its_apps_clients_on_exit(make_redis_server, zk, zk_hosts, tmp_path, test_id):
    redis_server = make_redis_server()
    bind = f"{LOOPBACK}:{free_port()}"
    env = dict(os.environ, AEROGUARD_ENV="local", REDIS_URL=redis_server.url, AEROGUARD_KEY_PREFIX=f"t:{test_id}:",
               ZK_HOSTS=zk_hosts + zk.chroot, GUNICORN_BIND=bind, WEB_CONCURRENCY="2",
               PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"))
    for name in ("GUNICORN_THREADS", "GUNICORN_WORKER_CLASS", "STORAGE_SLOTS", "GUNICORN_DRAIN_S"):
        env.pop(name, None)
    argv = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "webapp" / "gunicorn_conf.py"), "--bind", bind,
            "webapp:create_app()"]
    web = ServerProcess("web", argv, tmp_path / "web.log", env=env, cwd=ROOT)
    web.start()
    try:
        def cluster_answers() -> bool:
            web.check_running()
            try:
                with urllib.request.urlopen(f"http://{bind}/api/v1/cluster", timeout=5) as answer:
                    return answer.status == 200  # the app's ZooKeeper client is connected
            except OSError:
                return False

        wait_until(cluster_answers, 120, "gunicorn to answer /api/v1/cluster", interval=0.5)
    finally:
        web.stop(timeout=20)
    log = web.log_path.read_text()
    booted = set(re.findall(r"Booting worker with pid: (\d+)", log))
    stopped = set(re.findall(r"worker (\d+): the app's clients are stopped", log))
    assert len(booted) == 2 and stopped == booted, log[-3000:]
    assert "Exception during worker exit" not in log
