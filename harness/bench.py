"""The web tier's benchmarks against a fresh local stack (``make bench``).

`measure` starts ZooKeeper, Redis and the web tier (`start_stack`) and takes every figure:
``/nuevo`` under wrk (`wrk`), ``/detectar`` under open-loop paced load (`paced`, also used by
``scripts/bench_detection.py``), ``/detectar`` with a short and a long stored history (`fill`),
and ``redis-benchmark`` ``TS.ADD`` (`redis_benchmark`); `report` prints them against `TARGETS`.
``scripts/bench.py`` is the command line.
"""
from __future__ import annotations

import http.client
import os
import re
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import redis

from harness.process import free_ports
from harness.redis_server import find_redis
from harness.stack.config import StackConfig
from harness.stack.launcher import start_services
from harness.stack.launcher import stop_services
from webapp.config import Settings
from webapp.storage import Store

TARGETS = {"nuevo_rps": 3000.0, "detectar_p99_ms": 10.0, "history_ratio": 1.10}


def start_stack(state_dir: Path, workers: int) -> tuple[list, str, int]:
    """ZooKeeper, Redis and the web tier (no edge nodes: their traffic would blur the figures).

    The learned detectors are left out (their manifest folder is empty), so ``/detectar``
    measures the web tier, storage and the physical rule; ``scripts.bench_detection`` measures
    the full panel over gRPC to the TF Serving stand-in.
    """
    ports = free_ports(11)
    config = StackConfig(state_dir=state_dir, zk_ports=tuple(ports[0:3]), zk_peer_ports=tuple(ports[3:6]),
                         zk_election_ports=tuple(ports[6:9]), redis_port=ports[9], web_port=ports[10],
                         web_workers=workers, services=("zookeeper", "redis", "web"))
    config.log_dir.mkdir(parents=True, exist_ok=True)
    empty_models = state_dir / "no-models"
    empty_models.mkdir()
    os.environ["MODELS_DIR"] = str(empty_models)
    services, _ = start_services(config)
    return services, f"127.0.0.1:{config.web_port}", config.redis_port


def wrk(url: str, seconds: int, connections: int, threads: int) -> dict:
    """Closed-loop throughput with wrk; returns requests/s, p50/p99 ms and non-2xx count."""
    script = Path(tempfile.mkdtemp()) / "report.lua"
    script.write_text(
        'done = function(summary, latency, requests)\n'
        '  io.write(string.format("RESULT %f %f %f %d %d\\n", summary.requests / (summary.duration / 1e6),\n'
        '    latency:percentile(50) / 1000, latency:percentile(99) / 1000,\n'
        '    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout,\n'
        '    summary.requests))\nend\n')
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency",
                          "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    rps, p50, p99, errors, total = re.search(r"RESULT (\S+) (\S+) (\S+) (\d+) (\d+)", out).groups()
    return {"rps": float(rps), "p50_ms": float(p50), "p99_ms": float(p99),
            "errors": int(errors), "requests": int(total)}


def paced(host: str, path_for, rate: float, seconds: float, clients: int = 8, split=None,
          headers: dict | None = None) -> dict:
    """Open-loop load at `rate` req/s: latency counts from each request's scheduled time.

    `host` is ``host:port``; `path_for(client, n)` names each request's path. With `split`
    (client number -> label), figures come per label.
    """
    interval = clients / rate
    latencies: list[tuple[str, float]] = []
    errors = [0]
    lock = threading.Lock()
    start = time.perf_counter() + 0.2

    def run(offset: int) -> None:
        conn = http.client.HTTPConnection(host, timeout=5)
        n = 0
        while True:
            due = start + (offset / clients + n) * interval
            if due - start > seconds:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            conn.request("GET", path_for(offset, n), headers=headers or {})
            answer = conn.getresponse()
            answer.read()
            took = time.perf_counter() - due
            with lock:
                latencies.append((split(offset) if split else "", took))
                if answer.status >= 300:
                    errors[0] += 1
            n += 1
        conn.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    def figures(selected: list[float]) -> dict:
        ms = np.array(selected) * 1000
        return {"rate": rate, "requests": len(ms), "p50_ms": float(np.percentile(ms, 50)),
                "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max()), "errors": errors[0]}

    if split is None:
        return figures([t for _, t in latencies])
    return {label: figures([t for lab, t in latencies if lab == label]) for label in {lab for lab, _ in latencies}}


def fill(redis_port: int, sensor: str, count: int) -> None:
    """Store `count` readings 100 ms apart, ending a second ago, in time order.

    The first goes through the web tier's own storage code, so the series has its labels,
    retention and compaction rules; the rest follow in ``TS.MADD`` batches.
    """
    client = redis.Redis(port=redis_port, decode_responses=True)
    step = 100
    first = time.time_ns() // 1_000_000 - 1000 - count * step
    store = Store(client, Settings().replace(redis_url=f"redis://127.0.0.1:{redis_port}/0"))
    store.append_reading(sensor, first, 20.0)
    key = store.keys.series(sensor, "readings")
    batch = 10_000
    for offset in range(1, count, batch):
        rows = [(key, first + (offset + i) * step, 20.0 + ((offset + i) % 100) / 100)
                for i in range(min(batch, count - offset))]
        client.ts().madd(rows)
        if (offset // batch) % 20 == 0 or offset + batch >= count:
            print(f"    filled {min(offset + batch, count):>9,} / {count:,}", flush=True)
    client.close()


def redis_benchmark(redis_port: int, requests: int) -> float:
    bench = find_redis().benchmark
    env = find_redis().env()
    subprocess.run([str(find_redis().cli), "-p", str(redis_port), "TS.CREATE", "bench:raw", "DUPLICATE_POLICY", "LAST"],
                   env=env, capture_output=True, check=True)
    command = [str(bench), "-p", str(redis_port), "-c", "1", "-n", str(requests), "-q",
               "TS.ADD", "bench:raw", "*", "1.5"]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return float(re.search(r"([\d.]+) requests per second", out.replace(",", "")).group(1))


def measure(seconds: int, rate: float, connections: int, workers: int, history: int) -> dict:
    """Every figure of `report` from one fresh stack, printing each step as it starts."""
    state = Path(tempfile.mkdtemp(prefix="aeroguard-bench-"))
    print(f"==> fresh local stack in {state}", flush=True)
    services, host, redis_port = start_stack(state, workers)
    results: dict = {}
    try:
        print(f"==> /nuevo, wrk {connections} connections, {seconds} s (after 2 s of warm-up)", flush=True)
        wrk(f"http://{host}/nuevo?dato=21.5&sensor=bench-warmup", 2, connections, 2)
        results["nuevo"] = wrk(f"http://{host}/nuevo?dato=21.5&sensor=bench-nuevo", seconds, connections, 2)
        print(f"==> /detectar at {rate:.0f} req/s, {seconds} s", flush=True)
        results["detectar"] = paced(host, lambda c, n: f"/detectar?dato={20 + (n % 10) / 10}&sensor=bench-det-{c}",
                                    rate, seconds)
        print(f"==> /detectar with 1,000 vs {history:,} stored readings, interleaved at {rate:.0f} req/s",
              flush=True)
        fill(redis_port, "bench-hist-1k", 1_000)
        fill(redis_port, "bench-hist-1m", history)
        # One paced run alternating the two sensors: whatever else the machine does hits both alike.
        sensors = {0: "bench-hist-1k", 1: "bench-hist-1m"}
        both = paced(host, lambda c, n: f"/detectar?dato={20 + (n % 10) / 10}&sensor={sensors[c % 2]}",
                     rate, seconds * 3, split=lambda c: sensors[c % 2])
        results["history_1k"], results["history_1m"] = both["bench-hist-1k"], both["bench-hist-1m"]
        print("==> redis-benchmark TS.ADD, 1 client", flush=True)
        results["redis_ts_add_rps"] = redis_benchmark(redis_port, 100_000)
    finally:
        stop_services(services)
    return results


def report(r: dict) -> None:
    nuevo, det = r["nuevo"], r["detectar"]
    ratio = r["history_1m"]["p99_ms"] / r["history_1k"]["p99_ms"]
    rows = [
        ("/nuevo throughput", f"{nuevo['rps']:,.0f} req/s", f">= {TARGETS['nuevo_rps']:,.0f}",
         nuevo["rps"] >= TARGETS["nuevo_rps"]),
        ("/nuevo p50 / p99", f"{nuevo['p50_ms']:.2f} / {nuevo['p99_ms']:.2f} ms", "", None),
        ("/nuevo errors", f"{nuevo['errors']} of {nuevo['requests']:,}", "0", nuevo["errors"] == 0),
        (f"/detectar p50 / p99 @ {det['rate']:.0f}/s", f"{det['p50_ms']:.2f} / {det['p99_ms']:.2f} ms",
         f"p99 <= {TARGETS['detectar_p99_ms']:.0f} ms", det["p99_ms"] <= TARGETS["detectar_p99_ms"]),
        ("/detectar p99, 1k stored", f"{r['history_1k']['p99_ms']:.2f} ms", "", None),
        ("/detectar p99, 1M stored", f"{r['history_1m']['p99_ms']:.2f} ms", "", None),
        ("1M / 1k p99 ratio", f"{ratio:.2f}", f"<= {TARGETS['history_ratio']:.2f}", ratio <= TARGETS["history_ratio"]),
        ("redis-benchmark TS.ADD, 1 client", f"{r['redis_ts_add_rps']:,.0f} req/s", "", None),
        ("/nuevo vs raw TS.ADD", f"{nuevo['rps'] / r['redis_ts_add_rps']:.2f}x", "", None),
    ]
    print()
    print(f"{'measure':<34} {'figure':<22} {'target':<14} ok")
    for name, figure, target, ok in rows:
        print(f"{name:<34} {figure:<22} {target:<14} {'' if ok is None else 'yes' if ok else 'NO'}")
