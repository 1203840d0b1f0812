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
status 1 on any violation. The generator and the checks are in `harness.fuzz`.

    python -m scripts.fuzz --requests 10000 --seed 1
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import redis

from harness.fuzz import fuzz

FLOOD_MAX_SENSORS = 100  # MAX_SENSORS of make fuzz's own stack, so the sensor flood reaches it


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
