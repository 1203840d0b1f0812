"""Redis storage capacity (``make bench-storage``): Redis CPU per stored reading, memory per sensor.

Starts a private redis-server with TimeSeries (`harness.redis_server`) and reaches it only
through the web tier's public storage API (``create_app(settings).extensions["store"]``, its
incident tracker, `webapp.judging.readings_judged`), so the figures follow the key layout.

1. CPU: the same number of readings through each path, in one run: raw pipelined ``TS.ADD``,
   an edge aggregate stored (``Store.append_aggregate``), a plain reading (``append_reading``)
   and an edge aggregate stored and judged (what ``POST /api/v1/readings`` asks of Redis: the
   append, the window read, the decision and the incident). The server's own CPU (``INFO cpu``,
   less its idle rate) and its scripts' time (``INFO commandstats``) per reading.
2. Memory: a few edge groups at 1 Hz with explicit timestamps for some hours, each second stored
   and its decision recorded (five ballots: seeded synthetic scores, a normal verdict), so the
   compaction rules fire; then every key's ``MEMORY USAGE`` by kind, TimeSeries bytes per sample
   from closed chunks (``TS.INFO … DEBUG``), and the steady state each kind reaches under the
   retentions of `webapp.config.RetentionSettings`.

``python -m harness.bench_storage [--readings N] [--sensors S] [--hours H]`` prints progress and
a table, and writes ``results.json`` and ``storage.png`` into ``out/bench-storage/``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import redis

from edge.fusion import fuse
from edge.simulator import TemperatureSimulator
from harness.process import ROOT
from harness.process import free_port
from harness.redis_server import RedisServer
from webapp import create_app
from webapp import shutdown
from webapp.config import Settings
from webapp.detection.vote import Ballot
from webapp.detection.vote import decide
from webapp.judging import readings_judged

DETECTORS = ("physical", "isolation_forest", "context", "autoencoder", "lstm")  # the panel's five
T0_MS = 1_767_225_600_000  # 2026-01-01: explicit timestamps, far from the wall clock on purpose
CPU_SENSORS = 50
JUDGED_SENSORS = 10  # at most; each filled first with the readings judging reads (its context)
BATCH = 100  # raw TS.ADDs per pipeline
SCRIPTS = ("cmdstat_evalsha", "cmdstat_eval")
DAY_S = 86_400
SHARD_GB = 24  # data one Redis master holds (a 32 GB host: room for a fork and fragmentation)
ALLOWANCE = 1.2  # used_memory and fragmentation over the keys' MEMORY USAGE


def log(message: str) -> None:
    print(f"[bench-storage {time.strftime('%H:%M:%S')}] {message}", flush=True)


def server_cpu_s(client: redis.Redis) -> float:
    cpu = client.info("cpu")
    return float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])


def command_usec(client: redis.Redis, names: Sequence[str]) -> int:
    stats = client.info("commandstats")
    return sum(int(stats[name]["usec"]) for name in names if name in stats)


# -- 1. CPU per reading -------------------------------------------------------------------------

class CpuBench:
    """Each path's Redis CPU per reading, the server's idle CPU taken out."""

    def __init__(self, client: redis.Redis, app, readings: int):
        self.client = client
        self.app = app
        self.store = app.extensions["store"]
        self.readings = readings
        self.rng = random.Random(7)
        before = server_cpu_s(client)
        time.sleep(1.0)  # the idle server's own CPU (cron, clients), taken out of every path's
        self.idle_cpu_per_s = max(0.0, server_cpu_s(client) - before)
        self.judged_sensors = min(JUDGED_SENSORS, max(1, readings // 1000))
        self.context = readings_judged(app.extensions["panel"], app.extensions["settings"].detection.window_size)

    def measure(self, path: str, work, commands: Sequence[str], readings: int) -> dict:
        cpu, usec, started = server_cpu_s(self.client), command_usec(self.client, commands), time.perf_counter()
        work(readings)
        wall = time.perf_counter() - started
        cpu_s = server_cpu_s(self.client) - cpu - self.idle_cpu_per_s * wall
        result = {"path": path, "readings": readings, "wall_s": round(wall, 2),
                  "client_readings_per_s": round(readings / wall),
                  "redis_cpu_us": round(cpu_s * 1e6 / readings, 1),
                  "command_us": round((command_usec(self.client, commands) - usec) / readings, 1)}
        result["readings_per_s_at_half_core"] = round(0.5e6 / max(result["redis_cpu_us"], 0.1))
        log(f"{path}: {result['redis_cpu_us']} µs Redis CPU per reading ({result['command_us']} µs in "
            f"{'/'.join(c.removeprefix('cmdstat_') for c in commands)}), {result['client_readings_per_s']}/s")
        return result

    @staticmethod
    def _stamps(readings: int, sensors: int = CPU_SENSORS, first: int = 0):
        for i in range(first, first + readings):
            yield i, f"cpu-{i % sensors}", T0_MS + (i // sensors) * 1000

    def raw(self, readings: int) -> None:
        for n in range(CPU_SENSORS):
            self.client.execute_command("TS.CREATE", f"bench-raw:{n}", "DUPLICATE_POLICY", "BLOCK")
        pipe = self.client.pipeline(transaction=False)
        for i, name, ts in self._stamps(readings):
            pipe.execute_command("TS.ADD", f"bench-raw:{name.split('-')[1]}", ts, repr(20 + self.rng.gauss(0, 0.3)))
            if len(pipe) == BATCH:
                pipe.execute()
        pipe.execute()

    def aggregates(self, readings: int) -> None:
        for i, name, ts in self._stamps(readings):
            self.store.append_aggregate(f"agg-{name}", 1, i + 1, ts, 20 + self.rng.gauss(0, 0.3))

    def plain(self, readings: int) -> None:
        for i, name, ts in self._stamps(readings):
            self.store.append_reading(f"plain-{name}", ts, 20 + self.rng.gauss(0, 0.3), write_id=f"w{i}")

    def judged(self, readings: int) -> None:
        """What one edge aggregate asks of Redis (`webapp.judging.judge_newest`'s storage calls)."""
        settings = self.app.extensions["settings"]
        incidents = self.app.extensions["incidents"]
        for i, name, ts in self._stamps(readings, self.judged_sensors, self.context * self.judged_sensors):
            group = f"judged-{name}"
            stored = self.store.append_aggregate(group, 1, i + 1, ts, 20 + self.rng.gauss(0, 0.3))
            window, _, _ = self.store.read_for_judging(group, self.context, end=stored.timestamp)
            decision = synthetic_decision(self.rng, settings.detection.vote_required)
            event = {"kind": "decision", "sensor": group, "timestamp": stored.timestamp,
                     "value": window.values[-1], **decision.as_dict()}
            call = incidents.call(group, decision.anomaly, decision.votes, stored.timestamp, event)
            replies = self.store.record_decision(group, stored.timestamp, decision, window.values[-1], also=[call])
            incidents.settle(group, event, replies[0])

    def run(self) -> list[dict]:
        """Every path, each on series created beforehand (creation is a one-off per sensor)."""
        for i in range(200):  # scripts loaded, connections open
            self.store.append_aggregate(f"warm-{i % 10}", 1, i + 1, T0_MS + i * 1000, 20.0)
        for n in range(CPU_SENSORS):
            self.store.append_aggregate(f"agg-cpu-{n}", 1, 0, T0_MS - 1000, 20.0)
            self.store.append_reading(f"plain-cpu-{n}", T0_MS - 1000, 20.0)
        log(f"judged path: {self.judged_sensors} group(s) filled with the {self.context} readings judging reads")
        for i, name, ts in self._stamps(self.context * self.judged_sensors, self.judged_sensors):
            self.store.append_aggregate(f"judged-{name}", 1, i, ts, 20 + self.rng.gauss(0, 0.3))
        judged = max(self.judged_sensors, self.readings // 10)
        return [self.measure("raw TS.ADD, pipelined", self.raw, ("cmdstat_ts.add",), self.readings),
                self.measure("edge aggregate stored", self.aggregates, SCRIPTS, self.readings),
                self.measure("plain reading stored", self.plain, SCRIPTS, self.readings),
                self.measure("edge aggregate stored and judged", self.judged, SCRIPTS, judged)]


def synthetic_decision(rng: random.Random, required: int):
    """Five ballots, none voting: the physical rule scores 0 on a normal reading, the others
    a full-precision float, as real scores are (the worst case for TimeSeries compression)."""
    ballots = [Ballot(name, False, 0.0 if name == "physical" else abs(rng.gauss(0.3, 0.1)), 1.0) for name in DETECTORS]
    return decide(ballots, required)


# -- 2. memory per sensor per day -----------------------------------------------------------------

def simulate(app, sensors: int, hours: float, checkpoint) -> None:
    """`sensors` edge groups of three simulated nodes at 1 Hz for `hours`, one thread each;
    `checkpoint(hour)` after every simulated hour, all groups past it."""
    store, settings = app.extensions["store"], app.extensions["settings"]
    seconds = int(hours * 3600)
    barrier = threading.Barrier(sensors)

    def group(n: int) -> None:
        rng = random.Random(n)
        nodes = {f"n{k}": TemperatureSimulator(seed=100 * n + k, base=60.0 + n) for k in range(3)}
        try:
            for s in range(seconds):
                t = T0_MS / 1000 + s
                value = fuse({node: sim.read(t) for node, sim in nodes.items()}).value
                stored = store.append_aggregate(f"mem-{n}", 1, s + 1, int(t * 1000), value)
                decision = synthetic_decision(rng, settings.detection.vote_required)
                store.record_decision(f"mem-{n}", stored.timestamp, decision, value)
                if (s + 1) % 3600 == 0 or s + 1 == seconds:
                    if barrier.wait() == 0:
                        checkpoint((s + 1) / 3600)
                    barrier.wait()
        except BaseException:
            barrier.abort()  # the other groups stop at their next checkpoint instead of waiting forever
            raise

    with ThreadPoolExecutor(max_workers=sensors) as pool:
        list(pool.map(group, range(sensors)))  # raises the first group's error


ROLES = (("writes", "write ids"), ("done", "write ids"), ("fence", "fence"), ("level", "judging state"),
         ("peaks", "judging state"), ("registry", "registry"), ("incident", "incidents"), ("incidents", "incidents"),
         ("events", "events"))


def key_kind(key: str, info: dict | None) -> str:
    """What a key holds: a TimeSeries (`info`: its ``TS.INFO``) by its labels, the rest by the
    role its name gives."""
    if info is not None:
        labels = info["labels"] if isinstance(info["labels"], dict) else dict(info["labels"])
        return f"{labels.get('kind', '?')} {labels['agg']}" if "agg" in labels else labels.get("kind", "?")
    parts = [part.strip("{}") for part in key.split(":")]
    return next((kind for role, kind in ROLES if role in parts), "other")


def ts_info(client: redis.Redis, key: str) -> dict:
    """``TS.INFO key DEBUG`` as a dict, its chunks as dicts (RESP2 replies are flat lists)."""
    reply = client.execute_command("TS.INFO", key, "DEBUG")
    info = reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2]))
    info["Chunks"] = [c if isinstance(c, dict) else dict(zip(c[::2], c[1::2])) for c in info["Chunks"]]
    return info


def memory_by_kind(client: redis.Redis, sensors: int) -> dict:
    """Bytes of every key by kind (per simulated sensor, and shared), and TimeSeries chunks."""
    kinds: dict = defaultdict(lambda: dict.fromkeys(("bytes", "keys", "samples", "closed_bytes", "closed_samples",
                                                     "members"), 0))
    for key in client.scan_iter(count=1000):
        held = client.type(key)
        info = ts_info(client, key) if held == "TSDB-TYPE" else None
        own = any(f"mem-{n}" in {part.strip("{}") for part in key.split(":")} for n in range(sensors))
        entry = kinds[key_kind(key, info) if own else f"(shared) {key_kind(key, info)}"]
        entry["bytes"] += client.memory_usage(key, samples=0) or 0
        entry["keys"] += 1
        if info is not None:
            chunks = info["Chunks"]
            entry["samples"] += sum(int(c["samples"]) for c in chunks)
            entry["closed_bytes"] += sum(int(c["size"]) for c in chunks[:-1])
            entry["closed_samples"] += sum(int(c["samples"]) for c in chunks[:-1])
        elif held == "zset":
            entry["members"] += client.zcard(key)
    return dict(kinds)


def bytes_per_sample(kind: str, entry: dict, minute: dict, raw: dict) -> tuple[float, str]:
    """From closed chunks; a compaction tier, which closes no chunk in hours, from the 1m or the
    raw tier's; failing all, open chunks (4,096 bytes each whatever they hold: an upper bound)."""
    closed = [(entry, "closed chunks")]
    if kind.startswith("reading_avg"):
        closed += [(minute, "the 1m tier's closed chunks"), (raw, "the raw tier's closed chunks")]
    for source, basis in closed:
        if source.get("closed_samples"):
            return source["closed_bytes"] / source["closed_samples"], basis
    source = entry if entry["samples"] else raw
    return source["bytes"] / max(source["samples"], 1), "open chunks (upper bound)"


def steady_state(kinds: dict, sensors: int, retention) -> list[dict]:
    """Each per-sensor kind's bytes per sensor per day and at steady state under `retention`.

    TimeSeries: samples a day (1 Hz; a compaction, one per bucket) times `bytes_per_sample`,
    kept for the tier's retention. Write ids: an edge group's are kept for ``retention_days`` (the aggregate's id
    window is the series' retention, `webapp.storage.ingest`), one per second. The rest is a
    few fixed keys per sensor, as measured.
    """
    per_day = {"reading": DAY_S, "reading_avg 1m": 1440, "reading_avg 1h": 24, "score": DAY_S, "vote": DAY_S,
               "verdict": DAY_S, "write ids": DAY_S}
    days = dict.fromkeys(per_day, retention.retention_days)
    days.update({"reading_avg 1m": retention.minute_retention_days, "reading_avg 1h": retention.hour_retention_days})
    minute, raw = kinds.get("reading_avg 1m", {}), kinds.get("reading", {})
    rows = []
    for kind, entry in sorted(kinds.items()):
        if kind.startswith("(shared)"):
            continue
        keys = entry["keys"] / sensors
        row = {"kind": kind, "keys_per_sensor": keys, "measured_bytes_per_sensor": entry["bytes"] / sensors}
        if kind in per_day and kind != "write ids":
            samples = entry["samples"]
            row["bytes_per_sample"], row["basis"] = bytes_per_sample(kind, entry, minute, raw)
            overhead = entry["bytes"] / entry["keys"] - row["bytes_per_sample"] * samples / entry["keys"]
            row["key_overhead_bytes"] = max(overhead, 0.0)
        elif kind == "write ids":
            row.update(bytes_per_sample=entry["bytes"] / max(entry["members"], 1), basis="bytes per zset member",
                       key_overhead_bytes=0.0)
        if kind in per_day:
            row["bytes_per_sensor_per_day"] = per_day[kind] * row["bytes_per_sample"] * keys
            row["retention_days"] = days[kind]
            row["steady_bytes_per_sensor"] = (row["bytes_per_sensor_per_day"] * days[kind]
                                              + row["key_overhead_bytes"] * keys)
        else:
            row["steady_bytes_per_sensor"] = row["measured_bytes_per_sensor"]
        rows.append(row)
    return rows


# -- running it ---------------------------------------------------------------------------------

def run(readings: int = 20_000, sensors: int = 2, hours: float = 6.0, out_dir: Path | None = None) -> dict:
    """Both measurements on a private redis-server; returns (and writes, with `out_dir`) the figures."""
    with tempfile.TemporaryDirectory(prefix="aeroguard-bench-storage-") as state:
        server = RedisServer(Path(state), free_port())
        server.start()
        try:
            server.wait_ready()
            settings = Settings().replace(redis_url=server.url, hostname="bench-storage", env="test")
            app = create_app(settings)
            # The bench's own connection for INFO, MEMORY USAGE, TS.INFO and the raw TS.ADDs: the
            # store's client may carry redis-py's TimeSeries reply parsers, which TS.INFO DEBUG breaks.
            client = redis.Redis.from_url(server.url, decode_responses=True)
            try:
                log(f"redis-server pid {server.pid} on {server.url}; CPU: {readings} readings per path")
                cpu = CpuBench(client, app, readings).run()
                client.flushall()
                log(f"memory: {sensors} edge groups at 1 Hz for {hours:g} simulated hours")
                used = {0.0: int(client.info("memory")["used_memory"])}

                def checkpoint(hour: float) -> None:
                    used[hour] = int(client.info("memory")["used_memory"])
                    log(f"  simulated hour {hour:g}: used_memory {used[hour] / 2**20:.1f} MiB")

                simulate(app, sensors, hours, checkpoint)
                kinds = memory_by_kind(client, sensors)
            finally:
                client.close()
                shutdown(app)
        finally:
            server.stop()
    rows = steady_state(kinds, sensors, settings.retention)
    total = sum(row["steady_bytes_per_sensor"] for row in rows)
    results = {"cpu": cpu, "memory": rows, "kinds": kinds, "used_memory": used, "sensors": sensors, "hours": hours,
               "retention": dataclasses.asdict(settings.retention), "steady_mb_per_sensor": total / 1e6,
               "sensors_per_gb": 1e9 / total, "sensors_per_shard": SHARD_GB * 1e9 / (total * ALLOWANCE)}
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
        plot(results, out_dir / "storage.png")
    return results


def table(results: dict) -> str:
    lines = ["| path | Redis CPU µs/reading | script/command µs | readings/s at 50 % of a core | client readings/s |",
             "|---|---|---|---|---|"]
    for r in results["cpu"]:
        lines.append(f"| {r['path']} | {r['redis_cpu_us']} | {r['command_us']} | {r['readings_per_s_at_half_core']:,} "
                     f"| {r['client_readings_per_s']:,} |")
    lines += ["", "| kind (per sensor) | keys | bytes/sample | basis | bytes/sensor/day | retention (d) "
              "| steady MB/sensor | measured now (bytes) |", "|---|---|---|---|---|---|---|---|"]
    for r in results["memory"]:
        per_day = r.get("bytes_per_sensor_per_day")
        per_sample = r.get("bytes_per_sample")
        lines.append(f"| {r['kind']} | {r['keys_per_sensor']:g} | {'' if per_sample is None else f'{per_sample:.2f}'} "
                     f"| {r.get('basis', 'fixed keys, as measured')} | {'' if per_day is None else f'{per_day:,.0f}'} "
                     f"| {r.get('retention_days', '')} | {r['steady_bytes_per_sensor'] / 1e6:.3f} "
                     f"| {r['measured_bytes_per_sensor']:,.0f} |")
    lines.append(f"\nsteady state: {results['steady_mb_per_sensor']:.2f} MB per sensor, "
                 f"{results['sensors_per_gb']:,.0f} sensors per GB of keys and values; "
                 f"{results['sensors_per_shard']:,.0f} per shard of {SHARD_GB} GB with x{ALLOWANCE} for Redis' own "
                 f"overhead and fragmentation (docs/capacity.md)")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    cpu = results["cpu"]
    left.barh([r["path"] for r in cpu], [r["redis_cpu_us"] for r in cpu], color="tab:blue")
    left.set_xlabel("Redis CPU per reading (µs)")
    left.invert_yaxis()
    rows = results["memory"]
    right.barh([r["kind"] for r in rows], [r["steady_bytes_per_sensor"] / 1e6 for r in rows], color="tab:orange")
    right.set_xlabel("steady-state MB per sensor at 1 Hz")
    right.invert_yaxis()
    fig.suptitle("AeroGuard storage: Redis CPU per reading, memory per sensor (make bench-storage)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.bench_storage", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readings", type=int, default=20_000, help="readings per CPU path (default 20,000)")
    parser.add_argument("--sensors", type=int, default=2, help="edge groups simulated at 1 Hz (default 2)")
    parser.add_argument("--hours", type=float, default=6.0, help="simulated hours (default 6)")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench-storage")
    args = parser.parse_args(argv)
    if args.readings < CPU_SENSORS or args.sensors < 1 or not 0 < args.hours <= 48:
        parser.error(f"--readings at least {CPU_SENSORS}, --sensors at least 1, --hours in (0, 48]")
    results = run(args.readings, args.sensors, args.hours, args.out)
    print(table(results))
    log(f"wrote {args.out / 'results.json'} and {args.out / 'storage.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
