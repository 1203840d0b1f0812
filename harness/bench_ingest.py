"""Edge ingest throughput (``make bench-ingest``, a step of ``make bench``): one Redis vs the
3-master Redis Cluster, single aggregates vs lists, beside raw pipelined ``TS.ADD``.

Starts a private redis-server with TimeSeries (`harness.redis_server`) and a private Redis
Cluster of 3 masters and 3 replicas (`harness.redis_cluster`), and, for each, the web tier
``create_app(settings)`` as each topology is deployed (one Redis: no ``WAIT``; the cluster:
``REDIS_WAIT_REPLICAS=1``, as ``make up REDIS=cluster`` runs it).

1. `THREADS` threads, each with its own Flask test client (in process: no HTTP server, so the
   figures are the web tier's Python and storage work, not gunicorn's; the learned detectors
   are left out, as in `harness.bench`), post ``/api/v1/readings`` for their own edge groups
   for a fixed time: one aggregate per request, then lists of `LIST` aggregates (one round of
   each of `LIST` groups). Every aggregate is stored and judged and must be answered ``stored``.
2. The store alone (no judging, one thread): ``Store.append_aggregate`` per aggregate vs
   ``Store.append_aggregates`` per list.
3. Raw pipelined ``TS.ADD`` (pipelines of `RAW_BATCH`, over keys spread across every shard)
   on the same server(s), one client.

Readings stored per second, in one run.

``python -m harness.bench_ingest [--seconds S] [--threads N] [--list L]`` prints progress and a table.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis

from harness.process import LOOPBACK
from harness.process import free_port
from harness.redis_cluster import RedisCluster
from harness.redis_server import RedisServer
from webapp import create_app
from webapp import shutdown
from webapp.config import Settings

THREADS = 3  # a gunicorn worker's STORAGE_SLOTS (3): a 4th request waiting on storage is refused 503
LIST = 50
RAW_BATCH = 1000
RAW_KEYS = 64  # raw TS.ADD keys, each its own hash tag: spread over every shard


def log(message: str) -> None:
    print(f"[bench-ingest {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def aggregate(group: str, round_: int) -> dict:
    now = _now_ms()
    return {"group": group, "epoch": 1, "round": round_, "timestamp": now, "value": 20.0 + round_ % 7 / 10,
            "readings": [{"node_id": "n1", "value": 20.0, "measured_at": now}], "excluded": []}


def post_for(app, seconds: float, threads: int, per_list: int, name: str) -> dict:
    """`threads` clients posting for `seconds`: each its own `per_list` groups, one round of
    each per request (a list when `per_list` > 1, else one object). Readings stored per second."""
    stored, other, requests = [0] * threads, [0] * threads, [0] * threads
    start = threading.Barrier(threads + 1)
    refused: list[str] = []  # the first answer not all stored, to show

    def run(n: int) -> None:
        client = app.test_client()
        groups = [f"{name}-{n}-{g}" for g in range(per_list)]

        def send(round_: int) -> None:
            body = [aggregate(group, round_) for group in groups]
            answer = client.post("/api/v1/readings", data=json.dumps(body if per_list > 1 else body[0]),
                                 content_type="application/json")
            results = answer.json.get("results", [answer.json]) if answer.is_json else []
            ok = sum(1 for r in results if r.get("status") == "stored")
            if ok < len(groups) and not refused:
                refused.append(f"{answer.status_code} {str(answer.json)[:200]}")
            stored[n] += ok
            other[n] += len(groups) - ok
            requests[n] += 1

        send(0)  # creates each group's series, untimed
        stored[n] = other[n] = requests[n] = 0
        start.wait()
        end = time.perf_counter() + seconds
        round_ = 1
        while time.perf_counter() < end:
            send(round_)
            round_ += 1

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    took = time.perf_counter() - began
    if refused:
        log(f"  not all stored, e.g.: {refused[0]}")
    return {"readings_per_s": sum(stored) / took, "requests_per_s": sum(requests) / took,
            "stored": sum(stored), "not_stored": sum(other)}


def raw_ts_add(client, seconds: float, prefix: str) -> dict:
    """Pipelined ``TS.ADD`` (``*`` timestamps) over `RAW_KEYS` keys for `seconds`, one client."""
    keys = [f"{prefix}{{raw-{k}}}" for k in range(RAW_KEYS)]
    for key in keys:
        client.ts().create(key, duplicate_policy="last")
    added = 0
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        pipe = client.pipeline(transaction=False)
        for i in range(RAW_BATCH):
            pipe.execute_command("TS.ADD", keys[i % RAW_KEYS], "*", 1.5)
        replies = pipe.execute(raise_on_error=False)
        added += sum(1 for reply in replies if not isinstance(reply, Exception))
    return {"readings_per_s": added / (time.perf_counter() - began), "stored": added}


def appends_for(store, seconds: float, per_list: int, name: str) -> dict:
    """The store alone, one thread: `per_list` groups' aggregates stored for `seconds`, one
    ``append_aggregate`` call each or one ``append_aggregates`` call per list (no judging)."""
    groups = [f"{name}-{g}" for g in range(per_list)]
    store.append_aggregates([(group, 1, 0, _now_ms(), 20.0) for group in groups])  # creates the series
    stored, round_ = 0, 1
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        items = [(group, 1, round_, _now_ms(), 20.0) for group in groups]
        answers = store.append_aggregates(items) if name.startswith("list") else \
            [store.append_aggregate(*item) for item in items]
        stored += sum(1 for answer in answers if answer.status == "stored")
        round_ += 1
    return {"readings_per_s": stored / (time.perf_counter() - began), "stored": stored}


def measure_topology(label: str, settings: Settings, raw_client, seconds: float, threads: int,
                     per_list: int) -> dict:
    app = create_app(settings)
    figures = {}
    try:
        for kind, size in (("single", 1), ("list", per_list)):
            log(f"{label}: {threads} threads posting {'one aggregate' if size == 1 else f'lists of {size}'}"
                f" per request for {seconds:g} s")
            figures[kind] = post_for(app, seconds, threads, size, f"{kind}-{size}")
            log(f"  {figures[kind]['readings_per_s']:,.0f} readings/s, {figures[kind]['requests_per_s']:,.0f} req/s, "
                f"{figures[kind]['not_stored']} not stored")
        for kind in ("single", "list"):
            log(f"{label}: the store alone, {per_list} aggregates per {'call each' if kind == 'single' else 'list'}"
                f", 1 thread, {seconds / 2:g} s")
            figures[f"append_{kind}"] = appends_for(app.extensions["store"], seconds / 2, per_list, f"{kind}-store")
            log(f"  {figures[f'append_{kind}']['readings_per_s']:,.0f} appends/s")
    finally:
        shutdown(app)
    log(f"{label}: raw pipelined TS.ADD (pipelines of {RAW_BATCH}, {RAW_KEYS} keys) for {seconds / 2:g} s")
    figures["raw"] = raw_ts_add(raw_client, seconds / 2, "bench-raw:")
    log(f"  {figures['raw']['readings_per_s']:,.0f} TS.ADD/s")
    return figures


def run(seconds: float, threads: int, per_list: int) -> dict:
    """Both topologies, each on private servers under a temporary folder, stopped by PID after."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="aeroguard-bench-ingest-") as state:
        (Path(state) / "no-models").mkdir()
        base = Settings().replace(hostname="bench-ingest", env="test", models_dir=str(Path(state) / "no-models"))
        server = RedisServer(Path(state) / "single", free_port())
        server.start()
        try:
            server.wait_ready()
            log(f"one Redis: pid {server.pid} on {server.url}")
            raw = redis.Redis.from_url(server.url, decode_responses=True)
            results["one Redis"] = measure_topology("one Redis", base.replace(redis_url=server.url), raw,
                                                    seconds, threads, per_list)
            raw.close()
        finally:
            server.stop()
        cluster = RedisCluster(Path(state) / "cluster")
        try:
            log("starting the Redis Cluster (3 masters, 3 replicas)")
            cluster.start()
            settings = base.replace(redis_cluster_nodes=tuple((LOOPBACK, port) for port in cluster.ports),
                                    redis_wait_replicas=1)
            raw = cluster.client()
            results["cluster, 3 masters"] = measure_topology("cluster", settings, raw, seconds, threads, per_list)
            raw.close()
        finally:
            cluster.stop()
    return results


def report(results: dict, threads: int, per_list: int) -> None:
    print()
    print(f"readings stored per second (web tier: create_app + Flask test client in {threads} threads, "
          f"each aggregate stored and judged)")
    print(f"{'topology':<20} {'1 per POST':>12} {f'{per_list} per POST':>12} {'list / 1':>9} "
          f"{'raw TS.ADD':>12} {'list / raw':>11}")
    for name, r in results.items():
        single, listed, raw = (r[k]["readings_per_s"] for k in ("single", "list", "raw"))
        print(f"{name:<20} {single:>12,.0f} {listed:>12,.0f} {listed / single:>8.2f}x {raw:>12,.0f} "
              f"{listed / raw:>10.3f}x")
    print()
    print("the store alone (Store.append_aggregate per aggregate vs append_aggregates per list; no judging), 1 thread")
    print(f"{'topology':<20} {'1 per call':>12} {f'{per_list} per call':>12} {'list / 1':>9}")
    for name, r in results.items():
        single, listed = r["append_single"]["readings_per_s"], r["append_list"]["readings_per_s"]
        print(f"{name:<20} {single:>12,.0f} {listed:>12,.0f} {listed / single:>8.2f}x")
    bad = sum(r[k]["not_stored"] for r in results.values() for k in ("single", "list"))
    print(f"aggregates not answered 'stored': {bad}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each web measurement")
    parser.add_argument("--threads", type=int, default=THREADS, help="posting threads")
    parser.add_argument("--list", type=int, default=LIST, help="aggregates per list")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    results = run(args.seconds, args.threads, args.list)
    report(results, args.threads, args.list)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
