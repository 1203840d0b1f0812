"""One fuzz campaign (`make fuzz`): `fuzz` against a running web tier, or against a private stack
started on free ports for the campaign (ZooKeeper, Redis and the web tier under gunicorn; no
edge nodes, whose writes would blur the check) and stopped after it, its logs kept on a
violation. ``scripts/fuzz.py`` is the command line.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import redis

from harness.fuzz.checks import Report
from harness.fuzz.checks import fuzz

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


def campaign(requests: int, seed: int, prefix: str, url: str | None = None,
             redis_url: str = "redis://127.0.0.1:6379/0", zk_hosts: str | None = None,
             zk_root: str = "/aeroguard", max_sensors: int | None = None, workers: int = 2) -> Report:
    """`requests` seeded requests against `url` (its Redis at `redis_url`, its ZooKeeper at
    `zk_hosts` for the epoch-poisoning check), or against a private stack when `url` is None."""
    services: list = []
    zk = None
    report = None
    try:
        if not url:
            print("==> starting a private stack on free ports", flush=True)
            state_dir = Path(tempfile.mkdtemp(prefix="aeroguard-fuzz-"))
            services, exports, redis_port = start_stack(state_dir, workers)
            url, zk_hosts, max_sensors = exports["WEB_URL"], exports["ZK_HOSTS"], FLOOD_MAX_SENSORS
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
        if zk_hosts:
            from kazoo.client import KazooClient

            zk = KazooClient(hosts=zk_hosts)
            zk.start(timeout=30)
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        print(f"==> {requests} requests (seed {seed}) against {url}", flush=True)
        report = fuzz(url, client, prefix, requests, seed, zk=zk, zk_root=zk_root, max_sensors=max_sensors)
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
    return report
