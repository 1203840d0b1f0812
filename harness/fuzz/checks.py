"""What `make fuzz` checks, and the run that checks it after each request: no answer is a 5xx,
a rejected request (4xx) leaves Redis as it was (`StoreState`), and at the end no made-up label
value in ``/metrics``, no moved fence, no key bucket holding more plain sensors than its share of
``MAX_SENSORS`` (so at most ``MAX_SENSORS + buckets - 1`` in all), keys read through `Keys`."""
from __future__ import annotations

import http.client
import json
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from dataclasses import field
from urllib.parse import urlsplit

import redis

from harness.fuzz.attacks import FENCED_EPOCH
from harness.fuzz.attacks import FENCED_GROUP
from harness.fuzz.attacks import Generator
from harness.fuzz.attacks import Request
from webapp.storage.keys import Keys

WARM_UP_READINGS = 12  # more than a window (WINDOW_SIZE, 10 by default)


class StoreState:
    """What a request could change under `prefix`: each key's sample count, length or value."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def take(self) -> dict[str, object]:
        # Not the write-id sets (`<prefix>{N}:s:<sensor>:writes`): they expire IDEMPOTENCY_WINDOW_S
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
         max_sensors: int | None = None, buckets: int = 16) -> Report:
    """Send `requests` generated requests to `base_url`, checking each answer against Redis.

    With `zk` (a started kazoo client of the web tier's ensemble) `FENCED_GROUP`'s election
    is made to have issued `FENCED_EPOCH` and its leader stores a first aggregate, and the run
    ends by checking that no poisoned epoch moved its fence; with `max_sensors` (the web tier's
    ``MAX_SENSORS``), that the sensor flood stayed within every bucket's share of it. `buckets`
    is the web tier's ``AEROGUARD_KEY_BUCKETS``. A key the run must have written (the fence, a
    sensor registry) that is found nowhere is a violation: the check reads the wrong key layout.
    """
    split = urlsplit(base_url)
    generator, state, report = Generator(seed), StoreState(client, prefix), Report()
    keys = Keys(prefix, buckets)
    if zk is not None:
        path = f"{zk_root.rstrip('/')}/groups/{FENCED_GROUP}/epoch"
        zk.ensure_path(path)
        zk.set(path, json.dumps({"epoch": FENCED_EPOCH, "leader": "fuzz"}).encode())
        status = send(split.hostname, split.port, leader_aggregate(generator))
        if not isinstance(status, int) or not 200 <= status < 300:
            report.violations.append(f"{FENCED_GROUP}'s leader aggregate (epoch {FENCED_EPOCH}) answered {status}")
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
    if zk is not None:
        report.violations += fence_moved(client, keys)
    if max_sensors is not None:
        report.violations += sensors_over_quota(client, keys, max_sensors)
    return report


def leader_aggregate(generator: Generator) -> Request:
    """`FENCED_GROUP`'s next round from the leader its election issued `FENCED_EPOCH` to: the fence."""
    generator.rounds[FENCED_GROUP] += 1
    body = {"group": FENCED_GROUP, "epoch": FENCED_EPOCH, "round": generator.rounds[FENCED_GROUP],
            "timestamp": int(time.time() * 1000), "value": 20.0, "readings": [{"node_id": "n1", "value": 20.0}]}
    return Request("POST", "/api/v1/readings", json.dumps(body).encode(), {"Content-Type": "application/json"})


def fence_moved(client: redis.Redis, keys: Keys) -> list[str]:
    """Violations: `FENCED_GROUP`'s fence is missing (its leader stored a round) or not at `FENCED_EPOCH`."""
    key = keys.group(FENCED_GROUP, "fence")
    fence = client.hget(key, "epoch")
    if fence is None:
        return [f"no fence at {key} although {FENCED_GROUP}'s leader stored a round: wrong key layout?"]
    if int(fence) != FENCED_EPOCH:
        return [f"{FENCED_GROUP}'s fence moved to epoch {fence}; its election issued {FENCED_EPOCH}"]
    return []


def sensors_over_quota(client: redis.Redis, keys: Keys, max_sensors: int) -> list[str]:
    """Violations: a bucket's sensor registry holding more than its share of `max_sensors`
    (``MAX_SENSORS`` is enforced per bucket, docs/decisions.md), or no registry at all (the
    warm-up sensor is always stored)."""
    pipe = client.pipeline(transaction=False)
    for bucket in keys.all_buckets:
        pipe.zcard(keys.registry("sensors", bucket))
    counts = pipe.execute()
    if not any(counts):
        return [f"no plain sensor in any of the {keys.buckets} registries {keys.registry('sensors', 0)}...: "
                "wrong key layout or AEROGUARD_KEY_BUCKETS?"]
    share = keys.share(max_sensors)
    return [f"{count} plain sensors in bucket {bucket}, more than its share {share} of MAX_SENSORS={max_sensors}"
            for bucket, count in enumerate(counts) if share and count > share]


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
