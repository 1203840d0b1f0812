"""The web tier under gunicorn, judging with every detector, as ``scripts/bench_detection.py`` loads it.

`served_web` starts gunicorn with the web tier's own settings (``webapp/gunicorn_conf.py``, as the
image and the local stack run it: gthread workers, 4 threads each) on a free loopback port in
the environment `harness.detectar_profile.backends` yields, waits until ``/detectar`` answers
with no detector degraded (the stand-in's and the web tier's log tails on stderr if it never
does), warms it up and stops it on exit. `worker_rss` reads each worker's RSS and whether
TensorFlow is mapped into it.
"""
from __future__ import annotations

import contextlib
import http.client
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from harness.detectar_profile import HEADERS
from harness.process import ROOT
from harness.process import free_ports
from harness.process import wait_until


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers=HEADERS)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def judged_fully(port: int) -> bool:
    try:
        status, body = get(port, "/detectar?dato=20.0&sensor=warmup")
    except OSError:
        return False
    return status in (200, 201) and not json.loads(body)["degraded"]


def worker_rss(master_pid: int) -> list[tuple[int, float, bool]]:
    """(pid, RSS in MiB, TensorFlow mapped) of each child of gunicorn's master."""
    pids = subprocess.run(["pgrep", "-P", str(master_pid)], capture_output=True, text=True).stdout.split()
    out = []
    for pid in map(int, pids):
        status = Path(f"/proc/{pid}/status").read_text()
        rss = int(status.split("VmRSS:")[1].split()[0]) / 1024
        out.append((pid, rss, "libtensorflow" in Path(f"/proc/{pid}/maps").read_text()))
    return out


@contextlib.contextmanager
def served_web(web_env: dict[str, str], tmp: Path, workers: int) -> Iterator[tuple[int, int]]:
    """Gunicorn with `workers` workers, configured as deployed, judging fully and warmed up;
    yields (port, master pid). (Before 2026-12-01 it ran gunicorn's default sync workers, which
    the web tier's settings refuse: one request at a time per worker, so the bench measured a
    tail the deployed tier does not have.)"""
    web_port, = free_ports(1)
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "webapp" / "gunicorn_conf.py"),
         "--bind", f"127.0.0.1:{web_port}", "--workers", str(workers), "webapp:create_app()"], cwd=ROOT, env=web_env,
        stdout=open(tmp / "web.log", "w"), stderr=subprocess.STDOUT)
    try:
        try:
            wait_until(lambda: judged_fully(web_port), 180, "/detectar with no detector degraded")
        except Exception:
            for log in ("standin.log", "web.log"):
                print(f"--- {log}", (tmp / log).read_text()[-2000:], file=sys.stderr)
            raise
        for _ in range(20):
            get(web_port, "/detectar?dato=20.0&sensor=warmup")
        yield web_port, web.pid
    finally:
        web.terminate()
        web.wait(timeout=15)
