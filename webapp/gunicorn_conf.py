"""gunicorn settings of the web tier: ``gunicorn -c webapp/gunicorn_conf.py "webapp:create_app()"``.

Prometheus' multiprocess mode needs its directory set before any worker imports
prometheus-client, so it is chosen here, in the master, and emptied at start. Each worker
stops its app's clients as it exits (`worker_exit` calls `webapp.shutdown`).
"""
import os
import shutil
import tempfile
import time

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# Liveness under a Redis stall: requests queue for a worker's threads, so the web tier lets at
# most threads - 1 of them wait on storage (webapp.health.Bulkhead) and one thread always answers
# /healthz within the stack's 3 s healthcheck timeout: sync workers (or one thread) never could.
if worker_class == "sync" or (worker_class == "gthread" and threads < 2):
    raise SystemExit("the web tier needs gthread workers with GUNICORN_THREADS >= 2 (one thread for /healthz)")
os.environ.setdefault("STORAGE_SLOTS", str(max(1, threads - 1)))  # set --threads here, not on the command line
timeout = 30
graceful_timeout = 10
keepalive = 5
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="aeroguard-metrics-")

# Only now: prometheus-client picks its value class (in memory or multiprocess files) when first
# imported, and the workers fork from this master. Imported above the line before, every
# worker kept its metrics in memory and /metrics answered empty in the image, where nothing
# sets PROMETHEUS_MULTIPROC_DIR beforehand (found by `make swarm-test`).
from prometheus_client import multiprocess  # noqa: E402

# Drain (GUNICORN_DRAIN_S, 0 by default; the swarm stack sets it): on SIGTERM the workers go on
# serving that long before they stop accepting. Swarm takes a stopping task out of DNS first, and
# HAProxy needs a moment to drop it; without the pause each replaced task cost a client a 502
# during a rolling update (measured by swarm_tests/test_swarm_faults.py).
drain_s = float(os.environ.get("GUNICORN_DRAIN_S", "0"))


def on_starting(server):
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)
    if drain_s > 0:
        stop = server.stop

        def draining_stop(graceful=True):
            if graceful:
                server.log.info("draining for %.1f s before stopping", drain_s)
                time.sleep(drain_s)
            stop(graceful)

        server.stop = draining_stop


def child_exit(server, worker):
    multiprocess.mark_process_dead(worker.pid)


def worker_exit(server, worker):
    """In the worker, as it exits: stop what its app started (`webapp.shutdown`).

    The alert notifier finishes the webhook it is sending (and acknowledges it) instead of
    leaving it pending, and the ZooKeeper session closes now rather than expiring later.
    Skipped when the worker never loaded the app (gunicorn also calls this hook in the master
    for a worker that is already gone).
    """
    app = getattr(worker, "wsgi", None)
    if getattr(app, "extensions", None) is None or "redis" not in app.extensions:
        return
    from webapp import shutdown

    shutdown(app)
    server.log.info("worker %s: the app's clients are stopped (webapp.shutdown)", worker.pid)
