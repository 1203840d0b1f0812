"""Security of the Swarm stack, Redis: redis/ (entrypoint.sh, redis.conf, sentinel.conf) on the
local Redis Stack: Sentinels that require a password and still reach each other, the web tier's
client through them, and Grafana's read-only ACL user running every Redis query of the
dashboards and nothing else. The static checks of docker-stack.yml are in
tests/test_stack_security.py.
"""
from __future__ import annotations

import dataclasses
import re
import subprocess
import time
from pathlib import Path

import pytest
import redis

from harness.process import free_ports
from harness.process import stop_pid
from harness.process import wait_until
from harness.redis_server import find_redis
from tests.deploy_files import RedisFiles
from tests.deploy_files import start_logged
from webapp import make_redis
from webapp import shutdown
from webapp.config import Settings

ROOT = Path(__file__).resolve().parents[1]
MASTER_NAME = "aeroguard"
PASSWORD = "r3dis-full"
GRAFANA_PASSWORD = "gr4fana-r3ads"


@dataclasses.dataclass
class Secured:
    """A master and two Sentinels started by redis/entrypoint.sh with both secrets."""

    master_port: int
    sentinel_ports: list[int]

    def client(self, port: int, **kwargs) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=3, decode_responses=True, **kwargs)


def _write_files(base: Path, master_port: int, sentinel_port: int | None, timeseries: Path,
                 password: str = PASSWORD, grafana_password: str = GRAFANA_PASSWORD) -> RedisFiles:
    base.mkdir(parents=True, exist_ok=True)
    files = RedisFiles(base, timeseries, password, grafana_password)
    files.write("redis.conf", {
        "loadmodule /opt/redis-stack/lib/redistimeseries.so": f"loadmodule {timeseries}",
        "dir /data": f"dir {base}",
    })
    if sentinel_port is not None:
        files.write("sentinel.conf", {
            "sentinel monitor aeroguard redis-1 6379 2": f"sentinel monitor aeroguard localhost {master_port} 1",
            "port 26379": f"port {sentinel_port}",
            "dir /data": f"dir {base}",
        })
    return files


def _start_sentinel(files: RedisFiles, paths, data: Path, log: Path):
    data.mkdir(exist_ok=True)
    entrypoint = ["sh", str(files.conf_dir / "entrypoint.sh")]
    return start_logged(entrypoint + ["sentinel", "127.0.0.1"], files.env(paths, data), log)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.BusyLoadingError):
        return False


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    paths = find_redis()
    base = tmp_path_factory.mktemp("secured")
    master_port, *sentinel_ports = free_ports(3)
    processes = []
    try:
        master_files = _write_files(base / "master", master_port, None, paths.timeseries)
        entrypoint = ["sh", str(master_files.conf_dir / "entrypoint.sh")]
        # A lone master: no replica, so it may not refuse writes (min-replicas-to-write).
        argv = entrypoint + ["server", "--port", str(master_port), "--bind", "127.0.0.1",
                             "--replica-announce-ip", "127.0.0.1", "--min-replicas-to-write", "0"]
        processes.append(start_logged(argv, master_files.env(paths, base / "master"), base / "master.log"))
        found = Secured(master_port, sentinel_ports)
        master = found.client(master_port, password=PASSWORD)
        wait_until(lambda: _answers(master), 20, "secured master")
        master.close()
        for n, port in enumerate(sentinel_ports):
            files = _write_files(base / f"sentinel-{n}", master_port, port, paths.timeseries)
            processes.append(_start_sentinel(files, paths, base / f"sentinel-{n}" / "data", base / f"sentinel-{n}.log"))
        for port in sentinel_ports:
            sentinel = found.client(port, password=PASSWORD)
            wait_until(lambda: _answers(sentinel), 20, "secured Sentinel")
            sentinel.close()
        yield found
    finally:
        for process in processes:
            if process.poll() is None:
                stop_pid(process.pid)
            process.wait(timeout=10)


def _peer(sentinel: redis.Redis) -> dict | None:
    peers = sentinel.sentinel_sentinels(MASTER_NAME)   # redis-py parses each into a dict
    return peers[0] if peers else None


def test_sentinels_require_the_password_and_still_reach_each_other(secured):
    for port in secured.sentinel_ports:
        with secured.client(port) as anonymous:
            with pytest.raises(redis.AuthenticationError):
                anonymous.ping()
        with secured.client(port, password="wrong") as wrong:
            with pytest.raises(redis.AuthenticationError):
                wrong.ping()
    # Peers find each other through the master's hello channel, then PING each other with
    # requirepass; a peer that cannot authenticate is marked down after down-after-milliseconds.
    with secured.client(secured.sentinel_ports[0], password=PASSWORD) as sentinel:
        wait_until(lambda: _peer(sentinel), 20, "the Sentinels to discover each other")
        down_after_ms = int(sentinel.sentinel_master(MASTER_NAME)["down-after-milliseconds"])
        time.sleep(down_after_ms / 1000 + 1)
        peer = _peer(sentinel)
        assert peer["flags"] == "sentinel" and not peer["is_sdown"], peer
        assert int(peer["last-ok-ping-reply"]) < down_after_ms, peer


def test_web_tier_finds_the_master_through_the_password_protected_sentinels(secured):
    settings = Settings().replace(redis_sentinels=tuple(("127.0.0.1", port) for port in secured.sentinel_ports),
                        redis_sentinel_master=MASTER_NAME, redis_password=PASSWORD)
    client = make_redis(settings.storage)
    try:
        client.set("t:web-through-sentinel", "ok")
        assert client.get("t:web-through-sentinel") == "ok"
    finally:
        client.close()


def test_sentinel_health_check_passes_with_the_password(secured, tmp_path):
    paths = find_redis()
    files = _write_files(tmp_path, secured.master_port, secured.sentinel_ports[0], paths.timeseries)
    env = files.env(paths, tmp_path, AEROGUARD_SENTINEL_PORT=str(secured.sentinel_ports[0]))
    entrypoint = ["sh", str(files.conf_dir / "entrypoint.sh")]
    assert subprocess.run(entrypoint + ["health", "sentinel"], env=env, timeout=10).returncode == 0
    # It really authenticates: with another password the same check fails.
    files.secret.write_text("not-the-password", encoding="utf-8")
    wrong = subprocess.run(entrypoint + ["health", "sentinel"], env=env, capture_output=True, timeout=10)
    assert wrong.returncode != 0


def test_grafana_on_a_sentinel_finds_the_master_and_can_do_nothing_else(secured):
    port = secured.sentinel_ports[0]
    with secured.client(port, username="grafana", password=PASSWORD) as wrong:
        with pytest.raises(redis.AuthenticationError):
            wrong.ping()
    with secured.client(port, username="grafana", password=GRAFANA_PASSWORD) as grafana:
        # What the plugin's radix Sentinel client runs.
        assert grafana.ping()
        master_addr = grafana.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
        assert master_addr[1] == str(secured.master_port)
        assert grafana.execute_command("SENTINEL", "MASTER", MASTER_NAME)
        grafana.execute_command("SENTINEL", "SLAVES", MASTER_NAME)
        grafana.execute_command("SENTINEL", "SENTINELS", MASTER_NAME)
        pubsub = grafana.pubsub()
        pubsub.subscribe("switch-master")
        assert wait_until(lambda: pubsub.get_message(timeout=0.5), 5, "subscription")["type"] == "subscribe"
        pubsub.close()
        for command in (("SENTINEL", "FAILOVER", MASTER_NAME), ("SENTINEL", "SET", MASTER_NAME, "quorum", "1"),
                        ("SENTINEL", "REMOVE", MASTER_NAME), ("SENTINEL", "CONFIG", "GET", "*"),
                        ("SENTINEL", "RESET", "*"), ("ACL", "LIST"), ("SHUTDOWN",)):
            with pytest.raises(redis.exceptions.NoPermissionError):
                grafana.execute_command(*command)
        other = grafana.pubsub()
        with pytest.raises(redis.exceptions.NoPermissionError):
            other.subscribe("+sdown")
            other.get_message(timeout=2)
        other.close()


def test_grafana_on_redis_reads_the_series_and_can_write_nothing(secured):
    with secured.client(secured.master_port, password=PASSWORD) as admin:
        admin.execute_command("TS.ADD", "ag:s:probe:readings", 1000, 21.5, "LABELS", "app", "aeroguard", "probe", "1")
        admin.execute_command("TS.ADD", "other:secret", 1000, 1.0, "LABELS", "probe", "2")
        admin.xadd("ag:events", {"event": "{}"})
        admin.set("ag:plain", "value")
    with secured.client(secured.master_port, username="grafana", password=PASSWORD) as wrong:
        with pytest.raises(redis.AuthenticationError):
            wrong.ping()
    with secured.client(secured.master_port, username="grafana", password=GRAFANA_PASSWORD) as grafana:
        assert grafana.ping()
        assert grafana.execute_command("TS.RANGE", "ag:s:probe:readings", "-", "+") == [[1000, 21.5]]
        assert grafana.execute_command("TS.MRANGE", "-", "+", "FILTER", "probe=1")
        assert grafana.execute_command("TS.QUERYINDEX", "probe=1") == ["ag:s:probe:readings"]
        assert grafana.xrevrange("ag:events", count=1)
        refused = [
            ("TS.ADD", "ag:s:probe:readings", 2000, 1.0), ("TS.DEL", "ag:s:probe:readings", "-", "+"),
            ("SET", "ag:plain", "x"), ("GET", "ag:plain"), ("DEL", "ag:plain"), ("XADD", "ag:events", "*", "a", "b"),
            ("FLUSHALL",), ("CONFIG", "GET", "requirepass"), ("KEYS", "*"), ("ACL", "LIST"), ("SCAN", 0),
            ("TS.RANGE", "other:secret", "-", "+"), ("REPLICAOF", "127.0.0.1", "1"), ("SHUTDOWN",),
        ]
        for command in refused:
            with pytest.raises(redis.exceptions.NoPermissionError):
                grafana.execute_command(*command)


def test_every_redis_dashboard_query_runs_as_grafanas_read_only_user(secured):
    """The demo run of tests/test_grafana.py written as the web tier (ag: prefix), read back as
    Grafana: the sensor variable and every Redis panel and annotation query has data."""
    from tests.test_grafana import Demo
    from tests.test_grafana import _redis_queries
    from tests.test_grafana import run_demo

    url = f"redis://127.0.0.1:{secured.master_port}/0"
    settings = Settings().replace(redis_url=url, redis_password=PASSWORD, key_prefix=Settings().storage.key_prefix,
                        hostname="grafana-acl", env="test")
    written = run_demo(settings)
    written.redis.close()
    grafana_url = f"redis://grafana:{GRAFANA_PASSWORD}@127.0.0.1:{secured.master_port}/0"
    reader = Demo(written.app, settings.replace(redis_url=grafana_url, redis_password=None),
                  written.started_ms, written.ended_ms)
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):   # reading as grafana indeed
            reader.redis.set(f"{settings.storage.key_prefix}probe", "x")
        assert reader.sensors() == ["boiler-1", "kettle"]
        queries = _redis_queries()
        assert queries
        for case in queries:
            (panel,) = case.values
            assert reader.panel_rows(panel), f"{panel['title']}: no data as the grafana user"
    finally:
        reader.redis.close()
        shutdown(written.app)


def test_a_restarted_sentinel_takes_rotated_passwords_over_its_rewritten_config(secured, tmp_path):
    """Sentinel rewrites its config with users as hashes; a restart with new secrets must not
    keep accepting the old passwords."""
    paths = find_redis()
    (port,) = free_ports(1, exclude=[secured.master_port, *secured.sentinel_ports])
    data = tmp_path / "data"
    old = _write_files(tmp_path / "old", secured.master_port, port, paths.timeseries)
    process = _start_sentinel(old, paths, data, tmp_path / "old.log")
    try:
        with redis.Redis(port=port, password=PASSWORD, socket_timeout=3) as sentinel:
            wait_until(lambda: _answers(sentinel), 20, "Sentinel")
            sentinel.execute_command("SENTINEL", "FLUSHCONFIG")
        rewritten = (data / "sentinel.conf").read_text(encoding="utf-8")
        assert GRAFANA_PASSWORD not in rewritten
        assert re.search(r"^user grafana on .*#[0-9a-f]{64} ", rewritten, re.MULTILINE), rewritten
    finally:
        stop_pid(process.pid)
        process.wait(timeout=10)

    new = _write_files(tmp_path / "new", secured.master_port, port, paths.timeseries,
                       password="r3dis-rotated", grafana_password="gr4fana-rotated")
    process = _start_sentinel(new, paths, data, tmp_path / "new.log")
    try:
        with redis.Redis(port=port, password="r3dis-rotated", socket_timeout=3) as sentinel:
            wait_until(lambda: _answers(sentinel), 20, "Sentinel with rotated secrets")
        for username, password in ((None, PASSWORD), ("grafana", GRAFANA_PASSWORD)):
            with redis.Redis(port=port, username=username, password=password, socket_timeout=3) as stale:
                with pytest.raises(redis.AuthenticationError):
                    stale.ping()
        with redis.Redis(port=port, username="grafana", password="gr4fana-rotated", socket_timeout=3) as grafana:
            assert grafana.ping()
    finally:
        stop_pid(process.pid)
        process.wait(timeout=10)


@pytest.mark.parametrize("grafana_secret, message", [
    (None, "not readable"),
    ("has space", "must be non-empty"),
    (PASSWORD, "must differ"),
])
def test_entrypoint_refuses_a_missing_unsafe_or_shared_grafana_password(tmp_path, grafana_secret, message):
    paths = find_redis()
    (tmp_path / "redis_password").write_text(PASSWORD, encoding="utf-8")
    grafana = tmp_path / "redis_grafana_password"
    if grafana_secret is not None:
        grafana.write_text(grafana_secret, encoding="utf-8")
    env = paths.env() | {
        "AEROGUARD_REDIS_BIN": str(paths.bin_dir),
        "AEROGUARD_REDIS_CONF_DIR": str(ROOT / "redis"),
        "AEROGUARD_REDIS_DATA_DIR": str(tmp_path),
        "REDIS_PASSWORD_FILE": str(tmp_path / "redis_password"),
        "REDIS_GRAFANA_PASSWORD_FILE": str(grafana),
    }
    for role in (["server"], ["sentinel", "127.0.0.1"]):
        result = subprocess.run(["sh", str(ROOT / "redis/entrypoint.sh"), *role], env=env,
                                capture_output=True, text=True, timeout=10)
        assert result.returncode != 0 and message in result.stderr, (role, result.stderr)
