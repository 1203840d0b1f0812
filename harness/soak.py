"""A soak run: a private local stack on free ports under steady open-loop API load.

`soak` starts every service of the launcher (harness.stack), drives `Load` (``/detectar``
40 %, ``/listar`` 30 %, edge-style ``POST /api/v1/readings`` 30 %), samples each process's RSS,
Redis memory and key count and ZooKeeper's znode count every `SAMPLE_EVERY_S`, prints a line a
minute and returns the whole record; `plot` draws RSS and latency over time.
``scripts/soak.py`` (``make soak``) is its command line.
"""
from __future__ import annotations

import http.client
import json
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import redis

from harness.process import ROOT
from harness.process import free_ports
from harness.stack.config import StackConfig
from harness.stack.launcher import start_services
from harness.stack.launcher import stop_services
from harness.stack.services import SERVICES
from harness.zookeeper import zk_command

OUT_DIR = ROOT / "out" / "soak"
SAMPLE_EVERY_S = 10.0
SENSORS = [f"soak-{n}" for n in range(4)]


class Load:
    """Open-loop paced requests at `rate` per second from `clients` threads."""

    def __init__(self, host: str, port: int, rate: float, clients: int = 10, seed: int = 1) -> None:
        self.host, self.port, self.rate, self.clients = host, port, rate, clients
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.rounds = {sensor: 0 for sensor in SENSORS}
        self.latencies: list[tuple[float, float, str]] = []  # (done at, seconds, kind)
        self.errors: list[tuple[float, str]] = []
        self.stop = threading.Event()

    def next_request(self) -> tuple[str, str, bytes | None]:
        with self.lock:
            r, sensor = self.rng.random(), self.rng.choice(SENSORS)
            value = round(20 + self.rng.gauss(0, 1), 3)
            if r < 0.4:
                return "detectar", f"/detectar?sensor={sensor}&dato={value}", None
            if r < 0.7:
                return "listar", f"/listar?sensor={sensor}&count=100", None
            self.rounds[sensor] += 1
            body = {"group": f"{sensor}-edge", "epoch": 1, "round": self.rounds[sensor],
                    "timestamp": time.time_ns() // 1_000_000, "value": value}
            return "ingest", "/api/v1/readings", json.dumps(body).encode()

    def run_client(self, offset: int, start: float) -> None:
        interval = self.clients / self.rate
        n = 0
        while not self.stop.is_set():
            due = start + (offset / self.clients + n) * interval
            delay = due - time.perf_counter()
            if delay > 0 and self.stop.wait(delay):
                break
            kind, path, body = self.next_request()
            error = None
            try:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                conn.request("POST" if body else "GET", path, body,
                             {"Content-Type": "application/json"} if body else {})
                answer = conn.getresponse()
                answer.read()
                conn.close()
                if answer.status >= 300:
                    error = f"{kind} HTTP {answer.status}"
            except (OSError, http.client.HTTPException) as exc:
                error = f"{kind} {exc.__class__.__name__}"
            done = time.perf_counter()
            with self.lock:
                self.latencies.append((done, done - due, kind))
                if error:
                    self.errors.append((done, error))
            n += 1

    def start(self) -> list[threading.Thread]:
        start = time.perf_counter() + 0.2
        threads = [threading.Thread(target=self.run_client, args=(i, start), daemon=True) for i in range(self.clients)]
        for thread in threads:
            thread.start()
        return threads

    def window(self, since: float) -> dict:
        with self.lock:
            took = [t for done, t, _ in self.latencies if done >= since]
            errors = sum(1 for done, _ in self.errors if done >= since)
        return summary(took, errors)


def summary(took: list[float], errors: int) -> dict:
    ms = np.array(took) * 1000 if took else np.array([0.0])
    return {"requests": len(took), "errors": errors, "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return sorted(found)


def processes(services: list) -> dict[str, int]:
    """name -> pid of every stack process, gunicorn workers as ``web-worker-<n>``."""
    found = {}
    for service in services:
        for rec in service.records():
            found[rec["name"]] = rec["pid"]
            if rec["name"] == "web":
                for n, child in enumerate(children(rec["pid"]), 1):
                    found[f"web-worker-{n}"] = child
    return found


def sample(services: list, redis_port: int, zk_port: int, load: Load, since: float) -> dict:
    with redis.Redis(port=redis_port, socket_timeout=5) as client:
        memory = client.info("memory")["used_memory"]
        keys = client.dbsize()
    znodes = None
    for line in zk_command(zk_port, "mntr").splitlines():
        if line.startswith("zk_znode_count"):
            znodes = int(line.split()[1])
    return {"t": time.time(), "rss_kib": {name: rss_kib(pid) for name, pid in processes(services).items()},
            "redis_used_memory": memory, "redis_keys": keys, "zk_znodes": znodes, **load.window(since)}


def plot(samples: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = samples[0]["t"]
    minutes = [(s["t"] - t0) / 60 for s in samples]
    fig, (ax_rss, ax_lat) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for name in samples[-1]["rss_kib"]:
        ax_rss.plot(minutes, [(s["rss_kib"].get(name) or 0) / 1024 for s in samples], label=name)
    ax_rss.set_ylabel("RSS (MiB)")
    ax_rss.legend(fontsize="small", ncol=3)
    ax_lat.plot(minutes[1:], [s["p50_ms"] for s in samples[1:]], label="p50")
    ax_lat.plot(minutes[1:], [s["p99_ms"] for s in samples[1:]], label="p99")
    ax_lat.set_yscale("log")  # the warm-up (models loading) would flatten everything after it
    ax_lat.set_ylabel(f"latency per {SAMPLE_EVERY_S:.0f} s (ms)")
    ax_lat.set_xlabel("minutes")
    ax_lat.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def growth(first: dict, last: dict) -> dict[str, float | None]:
    return {name: round(100.0 * (last["rss_kib"][name] - first["rss_kib"][name]) / first["rss_kib"][name], 1)
            if first["rss_kib"].get(name) and last["rss_kib"].get(name) else None for name in last["rss_kib"]}


def soak(minutes: float, rate: float, warmup_s: float, redis_mode: str) -> dict:
    ports = free_ports(16)
    config = StackConfig(state_dir=Path(tempfile.mkdtemp(prefix="aeroguard-soak-")), zk_ports=tuple(ports[0:3]),
                         zk_peer_ports=tuple(ports[3:6]), zk_election_ports=tuple(ports[6:9]), redis_port=ports[9],
                         redis=redis_mode, redis_replica_port=ports[10], sentinel_ports=tuple(ports[11:14]),
                         web_port=ports[14], services=tuple(name for name, _ in SERVICES))
    config.log_dir.mkdir(parents=True, exist_ok=True)
    has_edge = any(name.startswith("edge") for name in config.services)
    print(f"==> stack in {config.state_dir}; services {', '.join(config.services)}"
          + ("" if has_edge else " (no edge service in the launcher: soak without edge nodes)"), flush=True)
    services, _ = start_services(config)
    load = Load("127.0.0.1", config.web_port, rate)
    samples: list[dict] = []
    try:
        started = time.monotonic()
        since = time.perf_counter()
        samples.append(sample(services, config.redis_port, config.zk_ports[0], load, since))
        load_started = time.perf_counter()
        threads = load.start()
        next_minute = 60.0
        while (elapsed := time.monotonic() - started) < minutes * 60:
            time.sleep(min(SAMPLE_EVERY_S, max(0.1, minutes * 60 - elapsed)))
            samples.append(sample(services, config.redis_port, config.zk_ports[0], load, since))
            since = time.perf_counter()
            if time.monotonic() - started >= next_minute:
                minute = load.window(time.perf_counter() - 60)
                print(f"  minute {next_minute / 60:.0f}: {minute['requests']} requests, {minute['errors']} errors, "
                      f"p50 {minute['p50_ms']} ms, p99 {minute['p99_ms']} ms, redis keys {samples[-1]['redis_keys']}, "
                      f"znodes {samples[-1]['zk_znodes']}", flush=True)
                next_minute += 60.0
        load.stop.set()
        for thread in threads:
            thread.join(15)
        samples.append(sample(services, config.redis_port, config.zk_ports[0], load, since))
    finally:
        load.stop.set()
        stop_services(services)
    if load.errors:
        print(f"  errors: the stack's logs are kept in {config.state_dir / 'logs'}")
    else:
        shutil.rmtree(config.state_dir, ignore_errors=True)
    took = [t for _, t, _ in load.latencies]
    warm = next((s for s in samples if s["t"] - samples[0]["t"] >= warmup_s), samples[-1])
    warm_at = load_started + warmup_s
    after_warmup = summary([t for done, t, _ in load.latencies if done >= warm_at],
                           sum(1 for done, _ in load.errors if done >= warm_at))
    return {"minutes": minutes, "rate": rate, "edge_nodes": has_edge, "redis": redis_mode, "warmup_s": warmup_s,
            **summary(took, len(load.errors)), "after_warmup": after_warmup,
            "error_examples": sorted({e for _, e in load.errors})[:10],
            "rss_start_kib": samples[0]["rss_kib"], "rss_warm_kib": warm["rss_kib"],
            "rss_end_kib": samples[-1]["rss_kib"],
            "rss_growth_after_warmup_pct": growth(warm, samples[-1]),
            "redis_used_memory": [samples[0]["redis_used_memory"], samples[-1]["redis_used_memory"]],
            "redis_keys": [samples[0]["redis_keys"], warm["redis_keys"], samples[-1]["redis_keys"]],
            "zk_znodes": [samples[0]["zk_znodes"], samples[-1]["zk_znodes"]], "samples": samples}
