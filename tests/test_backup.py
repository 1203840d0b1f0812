"""``make backup`` / ``make restore`` round trip on a private stack (one Redis, then Sentinel).

The launcher's CLI starts only the Redis service on free ports in a private state folder;
the backup CLI snapshots it, the data is changed, and the restore brings back exactly the
snapshot's content, restarted through the launcher's records (new PIDs recorded, alive).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from harness.backup import master_port
from harness.backup import stack_redis_config
from harness.process import ROOT
from harness.process import free_ports
from harness.process import pid_alive
from harness.stack.config import StackConfig

SAMPLES = 200


def run(env: dict[str, str], module: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def records(env: dict[str, str]) -> dict[str, dict]:
    stack = json.loads((Path(env["AEROGUARD_RUN_DIR"]) / "stack.json").read_text())
    return {rec["name"]: rec for rec in stack["services"]}


def content(client: redis.Redis) -> dict:
    return {"series": client.ts().range("t:backup:s1", "-", "+"), "string": client.get("t:backup:note"),
            "keys": sorted(client.scan_iter("t:backup:*"))}


@pytest.fixture(params=["single", "sentinel"])
def stack_env(request, tmp_path: Path):
    ports = [str(p) for p in free_ports(5)]
    env = dict(os.environ, AEROGUARD_RUN_DIR=str(tmp_path / "run"), REDIS=request.param, REDIS_PORT=ports[0],
               REDIS_REPLICA_PORT=ports[1], SENTINEL_PORTS=",".join(ports[2:5]))
    run(env, "scripts.stack", "up", "--services", "redis")
    yield env
    subprocess.run([sys.executable, "-m", "scripts.stack", "down"], cwd=ROOT, env=env, capture_output=True, timeout=60)


def master_client(env: dict[str, str]) -> redis.Redis:
    config = StackConfig.from_env(env)
    stack = json.loads(config.stack_file.read_text())
    return redis.Redis(port=master_port(stack_redis_config(config, stack)), decode_responses=True)


@pytest.mark.slow
def test_backup_then_restore_brings_back_exactly_the_snapshot(stack_env, tmp_path):
    backups = tmp_path / "backups"
    with master_client(stack_env) as client:
        client.ts().create("t:backup:s1", duplicate_policy="block")
        client.ts().madd([("t:backup:s1", 1000 + i, float(i)) for i in range(SAMPLES)])
        client.set("t:backup:note", "before")
        client.wait(1 if stack_env["REDIS"] == "sentinel" else 0, 2000)
        saved = content(client)
    run(stack_env, "scripts.backup", "backup", "--dir", str(backups))
    (snapshot,) = backups.glob("*.rdb")
    before = {name: rec["pid"] for name, rec in records(stack_env).items()}

    with master_client(stack_env) as client:
        client.ts().add("t:backup:s1", 5000, 1.0)
        client.set("t:backup:note", "after")
        client.set("t:backup:later", "x")
        assert content(client) != saved
    out = run(stack_env, "scripts.backup", "restore", str(snapshot)).stdout
    assert "restored" in out

    after = records(stack_env)
    for name, rec in after.items():
        assert pid_alive(rec["pid"]), name
        assert rec["pid"] != before[name], f"{name} was restarted and its record updated"
    with master_client(stack_env) as client:
        assert content(client) == saved
    if stack_env["REDIS"] == "sentinel":  # the replica has the restored data too
        replica_port = int(stack_env["REDIS_REPLICA_PORT"])
        with redis.Redis(port=replica_port, decode_responses=True) as replica:
            assert content(replica) == saved
