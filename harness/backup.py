"""Backup and restore of the local stack's Redis (``make backup`` / ``make restore [BACKUP=file]``,
through ``python -m scripts.backup``).

``backup`` asks the running stack's Redis (with ``REDIS=sentinel``: the master the Sentinels
name now) for a snapshot over the replication protocol (``redis-cli --rdb``: a consistent RDB,
no pause, works on a live master) and writes it to ``backups/<UTC time>.rdb``. ``restore``
finds the Redis processes in the launcher's records (``.run/stack.json``), stops exactly those
PIDs (Sentinels first, so no failover starts), puts the snapshot in place and starts Redis again
through the launcher's own service builder, then updates the records. The web tier reconnects
by itself. Everything stored after the snapshot is gone: that is what a restore means.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import redis

from harness.process import ROOT
from harness.process import ServerError
from harness.process import stop_pid
from harness.redis_server import find_redis
from harness.stack.config import StackConfig
from harness.stack.launcher import load_stack
from harness.stack.launcher import record_alive
from harness.stack.services import RedisSentinelService
from harness.stack.services import redis_service

BACKUP_DIR = ROOT / "backups"


def running_stack(config: StackConfig) -> dict:
    stack = load_stack(config)
    if stack is None:
        raise ServerError(f"no stack running (no {config.stack_file}); `make up` first")
    return stack


def redis_records(stack: dict) -> list[dict]:
    """The records of Redis servers and Sentinels, in stack.json order."""
    return [rec for rec in stack["services"]
            if rec["name"] == "redis" or rec["name"].startswith(("redis-", "sentinel-"))]


def stack_redis_config(config: StackConfig, stack: dict) -> StackConfig:
    """The launcher config of the Redis the stack runs, from its records (mode and ports)."""
    ports = {rec["name"]: next(iter(rec["ports"].values())) for rec in redis_records(stack)}
    if "redis" in ports:
        return dataclasses.replace(config, redis="single", redis_port=ports["redis"])
    sentinels = tuple(port for name, port in sorted(ports.items()) if name.startswith("sentinel-"))
    return dataclasses.replace(config, redis="sentinel", redis_port=ports["redis-1"],
                               redis_replica_port=ports["redis-2"], sentinel_ports=sentinels)


def master_port(config: StackConfig) -> int:
    """The port to snapshot: the only server, or the master the Sentinels name now."""
    if config.redis != "sentinel":
        return config.redis_port
    for port in config.sentinel_ports:
        try:
            with redis.Redis(port=port, socket_timeout=2, decode_responses=True) as sentinel:
                address = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "aeroguard")
        except redis.RedisError:
            continue
        if address:
            return int(address[1])
    raise ServerError("no Sentinel names a master")


def backup(config: StackConfig, out_dir: Path = BACKUP_DIR) -> Path:
    """Write a snapshot of the stack's Redis to ``out_dir/<UTC time>.rdb`` and return its path."""
    redis_config = stack_redis_config(config, running_stack(config))
    port = master_port(redis_config)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / (time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + ".rdb")
    if path.exists():
        path = path.with_name(f"{path.stem}-{time.time_ns()}.rdb")
    paths = find_redis()
    done = subprocess.run([str(paths.cli), "-h", "127.0.0.1", "-p", str(port), "--rdb", str(path)],
                          env=paths.env(), capture_output=True, text=True, timeout=300)
    if done.returncode != 0 or not path.exists() or path.stat().st_size == 0:
        raise ServerError(f"redis-cli --rdb failed: {done.stderr.strip()}")
    with redis.Redis(port=port, socket_timeout=5) as client:
        keys = client.dbsize()
    print(f"backup of 127.0.0.1:{port} ({keys} keys) -> {path} ({path.stat().st_size} bytes)")
    return path


def newest_backup(out_dir: Path = BACKUP_DIR) -> Path:
    found = sorted(out_dir.glob("*.rdb"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise ServerError(f"no backups in {out_dir}; `make backup` first")
    return found[-1]


def restore(config: StackConfig, rdb: Path) -> None:
    """Stop the stack's Redis (by its recorded PIDs), load `rdb`, start it again, update the records."""
    if not rdb.is_file():
        raise ServerError(f"no such backup: {rdb}")
    stack = running_stack(config)
    records = redis_records(stack)
    redis_config = stack_redis_config(config, stack)
    # Sentinels first: a master stopped under running Sentinels would be failed over.
    for rec in sorted(records, key=lambda r: not r["name"].startswith("sentinel-")):
        if record_alive(rec):
            print(f"==> stopping {rec['name']} (pid {rec['pid']})", flush=True)
            stop_pid(rec["pid"])
    service = redis_service(redis_config, dict(os.environ))
    print(f"==> starting {service.name} from {rdb}", flush=True)
    if isinstance(service, RedisSentinelService):
        service.topology.start_from_snapshot(rdb, service.ready_timeout)
        service.wait_ready(service.ready_timeout)
    else:
        data = service.server.base_dir
        data.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(rdb, data / "dump.rdb")
        service.start()
        service.wait_ready(service.ready_timeout)
        # This server keeps no persistence: the copy must not come back at the next `make up`.
        (data / "dump.rdb").unlink(missing_ok=True)
    fresh = {rec["name"]: rec for rec in service.records()}
    stack["services"] = [fresh.get(rec["name"], rec) for rec in stack["services"]]
    tmp = config.stack_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(stack, indent=2) + "\n")
    tmp.replace(config.stack_file)
    print(f"restored {rdb}; Redis is back:")
    for rec in fresh.values():
        print(f"  {rec['name']:<12} pid {rec['pid']:<8} {rec['url']}")
