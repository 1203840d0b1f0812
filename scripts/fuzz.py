"""Hostile-input fuzzing of the web tier over HTTP: ``make fuzz`` (``python -m scripts.fuzz``).

A seeded generator sends requests to every endpoint (bad numbers, NaN/inf, huge and deeply
nested bodies, malformed JSON, bad sensor ids, path and query junk, wrong methods and content
types, plus valid readings and aggregates so acceptance is exercised too, and the attacks of
issue 10: event amplification, label cardinality, epoch poisoning, a flood of new sensor ids)
and checks two promises after each one: no answer is a 5xx, and a rejected request (4xx) leaves
Redis as it was: the same keys under the prefix, each time series with the same sample count,
each stream, hash and string unchanged. Only accepted requests may add. At the end, no HTTP
method or group name the generator made up may be a label value in ``/metrics``, no poisoned
epoch may have moved the fenced group's fence, and no more plain sensors than ``MAX_SENSORS``
may be stored. Without ``--url`` it starts its own local stack on free ports (ZooKeeper, Redis,
web under gunicorn; no edge nodes, whose writes would blur the check) and stops it after. Exit
status 1 on any violation.

    python -m scripts.fuzz --requests 10000 --seed 1
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Callable
from typing import Sequence
from urllib.parse import quote
from urllib.parse import urlencode
from urllib.parse import urlsplit

import redis

SENSORS = ["s1", "s2", "fuzz-a", "Fuzz_B.3"]
BAD_SENSORS = ["", " ", "a" * 65, "../etc/passwd", "s1*", "s1:x", "ns=x", "s 1", "s1\n", "ü", "{s1}", "%00",
               "s1/readings", "*", "?", "s1;FLUSHALL", "\x00", "--", "a" * 5000]
BAD_NUMBERS = ["nan", "NaN", "inf", "-inf", "Infinity", "1e999", "-1e999", "0x1f", "1_0", "١٢", "1,5", "",
               " ", "null", "true", "1e", "e1", ".", "+", "--1", "1.2.3", "9" * 400, "1e-99999", "²"]
JUNK_PATHS = ["/", "/nuevo/", "/nuevo/x", "/api", "/api/v1", "/api/v1/readings/1", "/api/v2/readings", "/%2e%2e/etc",
              "/static/../webapp/config.py", "/static/%2e%2e/%2e%2e/etc/passwd", "/api/v1/sensors/../../x", "/x" * 300,
              "/api/v1/sensors/" + "a" * 3000, "/listar%00", "/metrics/x", "/openapi.json/x", "/%ff%fe"]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
WARM_UP_READINGS = 12  # more than a window (WINDOW_SIZE, 10 by default)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


FENCED_GROUP, FENCED_EPOCH = "fuzz-fenced", 3  # a group whose ZooKeeper election issued epoch 3
FLOOD_MAX_SENSORS = 100  # MAX_SENSORS of make fuzz's own stack, so the sensor flood reaches it


class Generator:
    """Seeded requests over every endpoint; valid ones carry increasing rounds per group."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.rounds: Counter[str] = Counter()
        self.invented: set[str] = set()  # made-up methods and group names: never a metric label
        # The request mix: each kind of request (a method returning a `Request`) and its weight.
        # A new attack is one method and one row here.
        mix: list[tuple[Callable[[], Request], int]] = [
            (self.reading, 2), (self.listar, 1), (self.aggregate, 2), (self.aggregate_json_junk, 1),
            (self.huge_body, 1), (self.anomalies, 1), (self.sensors, 1), (self.config, 1), (self.misc, 1),
            (self.junk_path, 1), (self.long_query, 1),
            (self.event_amplification, 1),  # issue 10: 100 aggregates x 64 excluded nodes in one POST
            (self.label_cardinality, 1),  # issue 10: made-up HTTP methods, many new groups
            (self.epoch_poisoning, 1),  # issue 10: an epoch no election issued, to fence a group off
            (self.sensor_flood, 2),  # issue 10: a new sensor id per request, to fill Redis
        ]
        self.kinds: list[Callable[[], Request]] = [kind for kind, weight in mix for _ in range(weight)]

    def next(self) -> Request:
        return self.rng.choice(self.kinds)()

    # --- parts -----------------------------------------------------------------------------
    def sensor(self) -> str:
        return self.rng.choice(SENSORS) if self.rng.random() < 0.6 else self.rng.choice(BAD_SENSORS)

    def number(self) -> str:
        r = self.rng.random()
        if r < 0.4:
            return repr(round(self.rng.uniform(-30, 120), 3))
        if r < 0.5:
            return str(self.rng.randint(-10**6, 10**6))
        return self.rng.choice(BAD_NUMBERS)

    def junk(self) -> object:
        return self.rng.choice([None, True, False, "", "x", [], {}, [1], {"a": 1}, -1, 2**64, 1.5, "1", "NaN",
                                float("nan"), float("inf"), -float("inf"), 1e308, "a" * 1000])

    def query(self, params: dict[str, str]) -> str:
        items = [(k, v) for k, v in params.items() if self.rng.random() < 0.9]
        if self.rng.random() < 0.1:
            items.append((self.rng.choice(["x", "sensor", "dato", ""]), self.rng.choice(BAD_SENSORS)))
        return urlencode(items, quote_via=quote) if items else ""

    # --- request kinds ---------------------------------------------------------------------
    def reading(self) -> Request:
        path = self.rng.choice(["/nuevo", "/detectar"])
        return Request("GET", f"{path}?{self.query({'dato': self.number(), 'sensor': self.sensor()})}")

    def listar(self) -> Request:
        def bound() -> str:
            return self.rng.choice([str(self.rng.randint(0, 2**63)), "-1", "abc", "1e3", "", str(2**70),
                                    str(int(time.time() * 1000))])
        params = {"sensor": self.sensor(), "count": self.rng.choice(["1", "100", "0", "-5", "10001", "x", "1e2"]),
                  "from": bound(), "to": bound()}
        return Request("GET", f"/listar?{self.query(params)}")

    def valid_aggregate(self) -> dict:
        group = self.rng.choice(SENSORS)
        self.rounds[group] += 1
        return {"group": group, "epoch": 1, "round": self.rounds[group], "timestamp": int(time.time() * 1000),
                "value": round(self.rng.uniform(10, 40), 2),
                "readings": [{"node_id": f"n{i}", "value": 20.0 + i} for i in range(self.rng.randint(0, 3))]}

    def broken_aggregate(self) -> dict:
        item = self.valid_aggregate()
        field_ = self.rng.choice(["group", "epoch", "round", "timestamp", "value", "readings", "excluded", "extra"])
        action = self.rng.random()
        if action < 0.2 and field_ in item:
            del item[field_]
        elif field_ == "group":
            item["group"] = self.rng.choice(BAD_SENSORS + [self.junk()])
        elif field_ in ("readings", "excluded"):
            item[field_] = self.rng.choice([self.junk(), [{"node_id": self.rng.choice(BAD_SENSORS), "value": 1}],
                                            [{"node_id": "n1", "value": self.junk()}], [{}] * 70])
        elif field_ == "timestamp":
            item["timestamp"] = self.rng.choice([self.junk(), int(time.time() * 1000) + 10**9, -5, 2**63])
        else:
            item[field_] = self.junk()
        return item

    def aggregate(self) -> Request:
        r = self.rng.random()
        if r < 0.35:
            body: object = self.valid_aggregate()
        elif r < 0.8:
            body = self.broken_aggregate()
        else:
            count = self.rng.choice([0, 1, 3, 101])
            body = [self.broken_aggregate() if self.rng.random() < 0.5 else self.valid_aggregate()
                    for _ in range(count)]
        # A rejected list must store none of its valid members: rounds sent in one are spent.
        return self.post_json("/api/v1/readings", json.dumps(body, allow_nan=True).encode())

    def aggregate_json_junk(self) -> Request:
        valid = json.dumps(self.valid_aggregate())
        body = self.rng.choice([
            valid[: self.rng.randint(0, len(valid) - 1)], valid + "}", valid.replace(":", "=", 1), "",
            "null", "[]", "{}", '{"value": NaN}', "[" * 50_000 + "]" * 50_000, '{"a":' * 20_000, "\xff\xfe",
            valid.replace('"value": ', '"value": Infinity, "x": '), '"' + "a" * 1000])
        headers = {"Content-Type": self.rng.choice(["application/json", "text/plain",
                                                    "application/x-www-form-urlencoded",
                                                    "application/json; charset=latin-1", ""])}
        return Request("POST", "/api/v1/readings", body.encode("utf-8", "surrogatepass"), headers)

    def huge_body(self) -> Request:
        size = self.rng.choice([300 * 1024, 2 * 1024 * 1024])
        body = b'{"group": "s1", "value": 1, "pad": "' + b"a" * size + b'"}'
        return self.post_json(self.rng.choice(["/api/v1/readings", "/api/v1/config"]), body,
                              method=self.rng.choice(["POST", "PUT"]))

    def anomalies(self) -> Request:
        params = {"count": self.rng.choice(["1", "1000", "1001", "0", "x"]), "sensor": self.sensor(),
                  "kind": self.rng.choice(["decision", "sensor_fault", "x", "", "*"])}
        return Request("GET", f"/api/v1/anomalies?{self.query(params)}")

    def sensors(self) -> Request:
        if self.rng.random() < 0.3:
            return Request("GET", "/api/v1/sensors")
        return Request("GET", f"/api/v1/sensors/{quote(self.sensor(), safe='')}?{self.query({'count': self.number()})}")

    def config(self) -> Request:
        doc = self.rng.choice([{"period_s": self.junk()}, {"period_s": 1.0}, self.junk(), {"api_urls": [self.junk()]}])
        headers = {"Content-Type": "application/json"}
        if self.rng.random() < 0.5:
            headers["X-API-Key"] = self.rng.choice(["", "x", "a" * 500, "key"])
        return Request("PUT", f"/api/v1/config?{self.query({'group': self.sensor()})}",
                       json.dumps(doc, allow_nan=True).encode(), headers)

    def misc(self) -> Request:
        path = self.rng.choice(["/healthz", "/readyz", "/metrics", "/openapi.json", "/", "/api/v1/cluster",
                                "/static/" + quote(self.rng.choice(["x.js", "../config.py", "%2e%2e", "a" * 300]))])
        return Request(self.rng.choice(["GET"] * 4 + METHODS), path)

    def junk_path(self) -> Request:
        body = b"{}" if self.rng.random() < 0.3 else None
        return Request(self.rng.choice(METHODS), self.rng.choice(JUNK_PATHS), body)

    def long_query(self) -> Request:
        return Request("GET", f"/listar?sensor=s1&x={'a' * self.rng.choice([2100, 8000])}")

    def event_amplification(self) -> Request:
        """Many aggregates, each excluding the most nodes allowed: one request of 100 once wrote
        6,400 sensor-fault events and pushed decisions out of the capped event log. At most 30
        here: each aggregate is judged, and 100 of them can outlast the 10 s answer timeout on a
        busy machine (the 100 x 64 case is tests/test_growth.py's)."""
        items = []
        for _ in range(self.rng.choice([1, 10, 30])):
            item = self.valid_aggregate()
            item["excluded"] = [{"node_id": f"x{i}", "value": 99.0} for i in range(64)]
            items.append(item)
        if self.rng.random() < 0.2:
            items[self.rng.randrange(len(items))] = self.broken_aggregate()  # rejected whole: stores nothing
        return self.post_json("/api/v1/readings", json.dumps(items, separators=(",", ":"), allow_nan=True).encode())

    def label_cardinality(self) -> Request:
        """Label values a client could invent: a made-up HTTP method, or aggregates of new groups
        each with an excluded node (once one ``sensor_faults_total`` series per group)."""
        if self.rng.random() < 0.5:
            method = "".join(self.rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(self.rng.randint(3, 12)))
            self.invented.add(method)
            return Request(method, self.rng.choice(["/nuevo?dato=1", "/healthz", "/api/v1/readings", "/x"]))
        items = []
        for _ in range(self.rng.randint(1, 20)):
            group = f"made-up-{self.rng.getrandbits(40):010x}"
            self.invented.add(group)
            items.append({"group": group, "epoch": 1, "round": 1, "timestamp": int(time.time() * 1000),
                          "value": 20.0, "readings": [{"node_id": "n1", "value": 20.0}],
                          "excluded": [{"node_id": "n2", "value": 90.0}]})
        return self.post_json("/api/v1/readings", json.dumps(items).encode())

    def epoch_poisoning(self) -> Request:
        """An aggregate of `FENCED_GROUP` (whose election issued `FENCED_EPOCH`) with an epoch
        above it, which once moved the fence past every real leader; or the real leader's next
        round, which must go on being stored."""
        self.rounds[FENCED_GROUP] += 1
        poisoned = self.rng.random() < 0.7
        epoch = self.rng.choice([FENCED_EPOCH + 1, 2**31, 2**62]) if poisoned else FENCED_EPOCH
        body = {"group": FENCED_GROUP, "epoch": epoch, "round": self.rounds[FENCED_GROUP],
                "timestamp": int(time.time() * 1000), "value": 20.0, "readings": [{"node_id": "n1", "value": 20.0}]}
        return self.post_json("/api/v1/readings", json.dumps(body).encode())

    def sensor_flood(self) -> Request:
        """A reading for a sensor id never seen before: each once cost three keys for ever."""
        return Request("GET", f"/nuevo?dato=1&sensor=flood-{self.rng.getrandbits(48):012x}")

    def post_json(self, path: str, body: bytes, method: str = "POST") -> Request:
        return Request(method, path, body, {"Content-Type": "application/json"})


class StoreState:
    """What a request could change under `prefix`: each key's sample count, length or value."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def take(self) -> dict[str, object]:
        # Not the write-id sets (`<prefix>s:<sensor>:writes`): they expire IDEMPOTENCY_WINDOW_S
        # after their last write by design, so one may vanish while any request is answered.
        keys = sorted(k for k in self.client.scan_iter(match=f"{self.prefix}*", count=1000)
                      if not k.endswith(":writes"))
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.type(key)
        kinds = pipe.execute()
        for key, kind in zip(keys, kinds):
            if kind == "TSDB-TYPE":
                pipe.execute_command("TS.INFO", key)
            elif kind == "stream":
                pipe.xlen(key)
            elif kind == "hash":
                pipe.hgetall(key)
            elif kind == "string":
                pipe.get(key)
            else:
                pipe.type(key)
        values = pipe.execute()
        return {key: _samples(value) if kind == "TSDB-TYPE" else value
                for key, kind, value in zip(keys, kinds, values)}


def _samples(info: list | dict) -> int:
    """``totalSamples`` from a ``TS.INFO`` reply (redis-py may have parsed it into a dict)."""
    fields = info if isinstance(info, dict) else dict(zip(info[::2], info[1::2]))
    return int(fields.get("totalSamples", fields.get("total_samples")))


@dataclass
class Report:
    statuses: Counter = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    sent: int = 0

    def summary(self) -> str:
        accepted = sum(n for code, n in self.statuses.items() if isinstance(code, int) and code < 400)
        return (f"{self.sent} requests: {accepted} accepted, {self.sent - accepted} rejected; 5xx: "
                f"{sum(n for c, n in self.statuses.items() if isinstance(c, int) and c >= 500)}; "
                f"violations: {len(self.violations)}; by status {dict(sorted(self.statuses.items(), key=str))}")


def send(host: str, port: int, request: Request, timeout: float = 10.0) -> int | str:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(request.method, request.path, request.body, request.headers)
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException) as exc:
        return f"error:{exc.__class__.__name__}"
    finally:
        conn.close()


def fuzz(base_url: str, client: redis.Redis, prefix: str, requests: int, seed: int,
         progress_every: int = 1000, out=sys.stdout, zk=None, zk_root: str = "/aeroguard",
         max_sensors: int | None = None) -> Report:
    """Send `requests` generated requests to `base_url`, checking each answer against Redis.

    With `zk` (a started kazoo client of the web tier's ensemble) `FENCED_GROUP`'s election
    is made to have issued `FENCED_EPOCH`, and the run ends by checking that no poisoned epoch
    moved its fence; with `max_sensors` (the web tier's ``MAX_SENSORS``), that the sensor flood
    stayed within it.
    """
    split = urlsplit(base_url)
    generator, state, report = Generator(seed), StoreState(client, prefix), Report()
    if zk is not None:
        path = f"{zk_root.rstrip('/')}/groups/{FENCED_GROUP}/epoch"
        zk.ensure_path(path)
        zk.set(path, json.dumps({"epoch": FENCED_EPOCH, "leader": "fuzz"}).encode())
    # The first judgement of a full window runs the learned detectors' models for the first
    # time (over 10 s on a busy machine): once, before the checks, so no request times out on it.
    for n in range(WARM_UP_READINGS):
        warm_up = Request("GET", f"/detectar?dato={20 + n % 2}&sensor=fuzz-warm-up")
        send(split.hostname, split.port, warm_up, timeout=120)
    before = state.take()
    started = time.monotonic()
    for n in range(1, requests + 1):
        request = generator.next()
        status = send(split.hostname, split.port, request)
        report.sent += 1
        report.statuses[status] += 1
        after = state.take()
        what = f"{request.method} {request.path[:120]} body={(request.body or b'')[:120]!r}"
        if not isinstance(status, int) or status >= 500:
            report.violations.append(f"{status}: {what}")
        elif status >= 400 and after != before:
            changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
            report.violations.append(f"rejected ({status}) but changed {changed[:5]}: {what}")
        before = after
        if n % progress_every == 0 or n == requests:
            print(f"  {n}/{requests} in {time.monotonic() - started:.0f} s; 5xx/violations so far: "
                  f"{len(report.violations)}", file=out, flush=True)
    report.violations += invented_labels(split.hostname, split.port, generator.invented)
    fence = client.hget(f"{prefix}g:{FENCED_GROUP}:fence", "epoch")
    if zk is not None and fence is not None and int(fence) != FENCED_EPOCH:
        report.violations.append(f"{FENCED_GROUP}'s fence moved to epoch {fence}; its election issued {FENCED_EPOCH}")
    sensors = client.zcard(f"{prefix}registry:sensors")
    if max_sensors is not None and sensors > max_sensors:
        report.violations.append(f"{sensors} plain sensors stored, more than MAX_SENSORS={max_sensors}")
    return report


def invented_labels(host: str, port: int, invented: set[str]) -> list[str]:
    """Violations: a method or group name made up by the generator that became a metric label."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    labels = set(re.findall(r'="([^"]*)"', text))
    return [f"made-up label value in /metrics: {name}" for name in sorted(invented & labels)[:5]]


def start_stack(state_dir: Path, workers: int) -> tuple[list, dict[str, str], int]:
    """A private stack on free ports (no edge nodes: their aggregates would change Redis between
    a rejected request and the check), its web tier with ``MAX_SENSORS=FLOOD_MAX_SENSORS``."""
    from harness.process import free_ports
    from harness.stack.config import StackConfig
    from harness.stack.launcher import start_services

    ports = free_ports(11)
    config = StackConfig(state_dir=state_dir, zk_ports=tuple(ports[0:3]), zk_peer_ports=tuple(ports[3:6]),
                         zk_election_ports=tuple(ports[6:9]), redis_port=ports[9], web_port=ports[10],
                         web_workers=workers, services=("zookeeper", "redis", "web"))
    config.log_dir.mkdir(parents=True, exist_ok=True)
    os.environ["MAX_SENSORS"] = str(FLOOD_MAX_SENSORS)  # the services start from this environment
    services, exports = start_services(config)
    return services, exports, config.redis_port


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--url", help="a running web tier (default: start a private stack)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="its Redis (with --url)")
    parser.add_argument("--prefix", default="ag:", help="the web tier's key prefix")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--zk", help="its ZooKeeper (with --url), for the epoch-poisoning check")
    parser.add_argument("--zk-root", default="/aeroguard", help="its ZK_ROOT")
    parser.add_argument("--max-sensors", type=int, help="its MAX_SENSORS (with --url), for the sensor-flood check")
    args = parser.parse_args(argv)
    services: list = []
    zk = None
    report = None
    try:
        if args.url:
            url, redis_url, zk_hosts, max_sensors = args.url, args.redis_url, args.zk, args.max_sensors
        else:
            print("==> starting a private stack on free ports", flush=True)
            state_dir = Path(tempfile.mkdtemp(prefix="aeroguard-fuzz-"))
            services, exports, redis_port = start_stack(state_dir, args.workers)
            url, zk_hosts, max_sensors = exports["WEB_URL"], exports["ZK_HOSTS"], FLOOD_MAX_SENSORS
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
        if zk_hosts:
            from kazoo.client import KazooClient

            zk = KazooClient(hosts=zk_hosts)
            zk.start(timeout=30)
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        print(f"==> {args.requests} requests (seed {args.seed}) against {url}", flush=True)
        report = fuzz(url, client, args.prefix, args.requests, args.seed, zk=zk, zk_root=args.zk_root,
                      max_sensors=max_sensors)
        client.close()
    finally:
        if zk is not None:
            zk.stop()
            zk.close()
        if services:
            from harness.stack.launcher import stop_services
            stop_services(services)
            if report is not None and not report.violations:
                shutil.rmtree(state_dir, ignore_errors=True)
            else:
                print(f"stack logs kept in {state_dir / 'logs'}")
    print(report.summary())
    for violation in report.violations[:20]:
        print(f"  VIOLATION {violation}")
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
