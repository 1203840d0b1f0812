"""Deployment checks, Redis: the master, replica and Sentinel services, and the redis/ files
(redis.conf, sentinel.conf, entrypoint.sh) run on the real local Redis Stack, so a typo in a
directive fails here rather than on a swarm.
"""
from __future__ import annotations

import re
import subprocess

import pytest
import redis

from harness.process import free_ports
from harness.process import stop_pid
from harness.process import wait_until
from harness.redis_server import find_redis
from tests.deploy_files import ROOT
from tests.deploy_files import RedisFiles
from tests.deploy_files import config_targets
from tests.deploy_files import environment
from tests.deploy_files import load_stack
from tests.deploy_files import named_volumes
from tests.deploy_files import names
from tests.deploy_files import start_logged

SENTINEL_PORT = 26379


@pytest.fixture(scope="module")
def stack() -> dict:
    return load_stack()


def test_redis_master_replica_and_three_sentinels(stack):
    services = stack["services"]
    redis_stack = {n: s for n, s in services.items() if "redis-stack-server" in str(s["image"])}
    servers = [n for n, s in redis_stack.items() if s["command"][0] == "server"]
    sentinels = [n for n, s in redis_stack.items() if s["command"][0] == "sentinel"]
    assert len(servers) == 2 and len(sentinels) == 3
    for name in servers + sentinels:
        assert re.fullmatch(r"redis/redis-stack-server:\d+\.\d+\.\d+-v\d+", services[name]["image"])
        assert "redis_password" in names(services[name]["secrets"])
        assert named_volumes(services[name]), f"{name} keeps no state across restarts"
    for name in servers:
        targets = config_targets(services[name])
        assert targets["redis_conf"] == "/etc/aeroguard/redis.conf", name
    replicas = [n for n in servers if "--replicaof" in services[n]["command"]]
    assert len(replicas) == 1
    command = services[replicas[0]]["command"]
    master = command[command.index("--replicaof") + 1]
    assert master in servers and master != replicas[0]

    sentinel_conf = (ROOT / "redis/sentinel.conf").read_text(encoding="utf-8")
    monitor = re.search(r"^sentinel monitor (\S+) (\S+) (\d+) (\d+)$", sentinel_conf, re.MULTILINE)
    master_name, host, port, quorum = monitor.groups()
    assert host == master and port == "6379" and int(quorum) == 2
    # resolve-hostnames must precede the monitor line that names the master by hostname.
    assert sentinel_conf.index("sentinel resolve-hostnames yes") < monitor.start()
    for name in sentinels:
        assert services[name]["command"] == ["sentinel", name], "each Sentinel announces its service name"

    web_env = environment(services["web"])
    assert web_env["REDIS_SENTINEL_MASTER"] == master_name
    assert web_env["REDIS_SENTINELS"].split(",") == [f"{n}:{SENTINEL_PORT}" for n in sentinels]


def test_redis_conf_carries_module_persistence_and_write_safety():
    conf = (ROOT / "redis/redis.conf").read_text(encoding="utf-8")
    directives = {line.split()[0]: line.split(None, 1)[1] for line in conf.splitlines()
                  if line.strip() and not line.startswith("#")}
    assert directives["loadmodule"].endswith("/redistimeseries.so")
    assert directives["appendonly"] == "yes"
    assert int(directives["min-replicas-to-write"]) >= 1
    assert "requirepass" not in directives and "masterauth" not in directives


def _in_sync(replica: redis.Redis) -> bool:
    """True once the replica's link to its master is up; False while it is still starting."""
    try:
        return replica.info("replication").get("master_link_status") == "up"
    except (redis.ConnectionError, redis.BusyLoadingError):
        return False


def test_redis_and_sentinel_files_run_on_real_redis_stack(tmp_path):
    paths = find_redis()
    password = "t0ps3cr3t"
    master_port, replica_port, sentinel_port = free_ports(3)
    files = RedisFiles(tmp_path, paths.timeseries, password)
    files.write("redis.conf", {
        "loadmodule /opt/redis-stack/lib/redistimeseries.so": f"loadmodule {paths.timeseries}",
        "dir /data": f"dir {tmp_path}",
    })
    files.write("sentinel.conf", {
        "sentinel monitor aeroguard redis-1 6379 2": f"sentinel monitor aeroguard localhost {master_port} 1",
        "port 26379": f"port {sentinel_port}",
        "dir /data": f"dir {tmp_path}",
    })
    entrypoint = ["sh", str(files.conf_dir / "entrypoint.sh")]
    local = ["--bind", "127.0.0.1", "--replica-announce-ip", "127.0.0.1"]
    processes = []
    clients = []
    try:
        for name, port, extra in (("master", master_port, []),
                                  ("replica", replica_port, ["--replicaof", "127.0.0.1", str(master_port)])):
            data = tmp_path / name
            data.mkdir()
            argv = entrypoint + ["server", "--port", str(port), "--dir", str(data), *local, *extra]
            processes.append(start_logged(argv, files.env(paths, data), tmp_path / f"{name}.log"))
        master = redis.Redis(port=master_port, password=password, socket_timeout=2, decode_responses=True)
        replica = redis.Redis(port=replica_port, password=password, socket_timeout=2, decode_responses=True)
        clients += [master, replica]
        wait_until(lambda: _in_sync(replica), 20, "replica in sync")

        with redis.Redis(port=master_port, socket_timeout=2) as anonymous:
            with pytest.raises(redis.AuthenticationError):
                anonymous.ping()
        for client in (master, replica):
            assert "timeseries" in {m["name"] for m in client.module_list()}
            assert client.config_get("appendonly")["appendonly"] == "yes"
        assert master.config_get("min-replicas-to-write")["min-replicas-to-write"] == "1"

        master.execute_command("TS.ADD", "t:deploy", 1000, 21.5)
        wait_until(lambda: replica.exists("t:deploy") and replica.execute_command("TS.GET", "t:deploy"), 10,
                   "sample replicated")

        health = files.env(paths, tmp_path, AEROGUARD_REDIS_PORT=str(master_port))
        assert subprocess.run(entrypoint + ["health", "server"], env=health, timeout=10).returncode == 0

        sentinel_data = tmp_path / "sentinel"
        sentinel_data.mkdir()
        processes.append(start_logged(entrypoint + ["sentinel", "127.0.0.1"],
                                files.env(paths, sentinel_data), tmp_path / "sentinel.log"))
        sentinel = redis.Redis(port=sentinel_port, password=password, socket_timeout=2, decode_responses=True)
        clients.append(sentinel)
        # The replica is learned from the master's INFO, which needs `sentinel auth-pass`.
        wait_until(lambda: _sentinel_replicas(sentinel), 20, "Sentinel to discover the replica")
        assert "sentinel auth-pass aeroguard" in (sentinel_data / "sentinel.conf").read_text(encoding="utf-8")
        sentinel_health = files.env(paths, tmp_path, AEROGUARD_SENTINEL_PORT=str(sentinel_port))
        assert subprocess.run(entrypoint + ["health", "sentinel"], env=sentinel_health, timeout=10).returncode == 0

        # With its only replica gone the master refuses writes instead of acknowledging
        # writes a failover could lose (min-replicas-to-write 1).
        stop_pid(processes[1].pid)
        processes[1].wait(timeout=10)
        wait_until(lambda: _master_refuses_writes(master), 30, "master to refuse writes without a replica")
    finally:
        for client in clients:
            client.close()
        for process in processes:
            if process.poll() is None:
                stop_pid(process.pid)
            process.wait(timeout=10)


def _sentinel_replicas(sentinel: redis.Redis) -> bool:
    try:
        return bool(sentinel.execute_command("SENTINEL", "REPLICAS", "aeroguard"))
    except redis.ConnectionError:
        return False


def _master_refuses_writes(master: redis.Redis) -> bool:
    try:
        master.execute_command("TS.ADD", "t:deploy", "*", 1.0)
    except redis.ResponseError as exc:
        return "NOREPLICAS" in str(exc)
    return False


def test_entrypoint_refuses_a_missing_or_unsafe_password(tmp_path):
    paths = find_redis()
    env = paths.env() | {
        "AEROGUARD_REDIS_BIN": str(paths.bin_dir),
        "AEROGUARD_REDIS_CONF_DIR": str(ROOT / "redis"),
        "REDIS_PASSWORD_FILE": str(tmp_path / "absent"),
    }
    script = ["sh", str(ROOT / "redis/entrypoint.sh"), "server"]
    missing = subprocess.run(script, env=env, capture_output=True, text=True, timeout=10)
    assert missing.returncode != 0 and "not readable" in missing.stderr
    (tmp_path / "unsafe").write_text("has space", encoding="utf-8")
    env["REDIS_PASSWORD_FILE"] = str(tmp_path / "unsafe")
    unsafe = subprocess.run(script, env=env, capture_output=True, text=True, timeout=10)
    assert unsafe.returncode != 0 and "must be non-empty" in unsafe.stderr
