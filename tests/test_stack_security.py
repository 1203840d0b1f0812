"""Security of the Swarm stack (issue 10, finding 11): what runs where, with which rights.

Static checks of docker-stack.yml (encrypted overlays, dropped capabilities, read-only root
filesystems, the Docker socket, the visualizer's image, the web tier behind HAProxy), then the
real thing where it can run here: haproxy/haproxy.cfg with Debian's haproxy binary (``-c``, then
serving TLS in front of a stand-in web task), and redis/ (entrypoint.sh, redis.conf,
sentinel.conf) on the local Redis Stack: Sentinels that require a password and still reach each
other, the web tier's client through them, and Grafana's read-only ACL user running every Redis
query of the dashboards and nothing else.
"""
from __future__ import annotations

import dataclasses
import http.server
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis
import yaml

from harness.process import free_ports
from harness.process import stop_pid
from harness.process import wait_until
from harness.redis_server import find_redis
from tests.deploy_files import RedisFiles
from tests.deploy_files import environment
from tests.deploy_files import names
from tests.deploy_files import published_ports
from tests.deploy_files import start_logged
from webapp import make_redis
from webapp import shutdown
from webapp.config import Settings

ROOT = Path(__file__).resolve().parents[1]
STACK_FILE = ROOT / "docker-stack.yml"
HAPROXY_CFG = ROOT / "haproxy/haproxy.cfg"
MASTER_NAME = "aeroguard"

# Capabilities a service may add back after `cap_drop: [ALL]`, and why.
ALLOWED_CAPABILITIES = {
    # The official zookeeper image's entrypoint starts as root, chowns /data, /datalog and
    # /logs to `zookeeper`, then drops to it with gosu.
    **{name: {"CHOWN", "SETUID", "SETGID"} for name in ("zk1", "zk2", "zk3")},
}
# Services whose root filesystem stays writable, and why.
WRITABLE_ROOT = {
    # The zookeeper image writes /conf/zoo.cfg from ZOO_* at start, next to the logback.xml the
    # image ships in /conf: a tmpfs there would hide it.
    "zk1", "zk2", "zk3",
}


@pytest.fixture(scope="module")
def stack() -> dict:
    return yaml.safe_load(STACK_FILE.read_text(encoding="utf-8"))


def _mounts(service: dict) -> list[dict]:
    """Every volume entry in long form: {type, source, target, read_only}."""
    found = []
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            found.append(entry)
            continue
        parts = entry.split(":")
        kind = "bind" if parts[0].startswith(("/", ".", "~")) else "volume"
        found.append({"type": kind, "source": parts[0], "target": parts[1],
                      "read_only": len(parts) > 2 and "ro" in parts[2].split(",")})
    return found


# --- the stack file ------------------------------------------------------------------------

def test_every_overlay_network_is_encrypted(stack):
    """Keys, readings and the Redis password cross nodes on these networks: IPsec on each."""
    assert stack["networks"]
    for name, network in stack["networks"].items():
        assert network.get("driver") == "overlay", name
        assert "encrypted" in (network.get("driver_opts") or {}), f"overlay network {name} is not encrypted"


def test_every_service_drops_every_capability(stack):
    for name, service in stack["services"].items():
        assert service.get("cap_drop") == ["ALL"], f"{name} keeps the default capabilities"
        added = set(service.get("cap_add") or [])
        assert added <= ALLOWED_CAPABILITIES.get(name, set()), f"{name} adds back {sorted(added)}"


def test_services_run_on_a_read_only_root_filesystem_with_tmpfs_where_they_write(stack):
    for name, service in stack["services"].items():
        if name in WRITABLE_ROOT:
            assert not service.get("read_only"), name
            continue
        assert service.get("read_only") is True, f"{name} has a writable root filesystem"
        tmpfs = {m["target"] for m in _mounts(service) if m["type"] == "tmpfs"}
        assert "/tmp" in tmpfs, f"{name}: read-only with no tmpfs on /tmp"


def test_only_the_visualizer_mounts_the_docker_socket_read_only_and_unpublished(stack):
    holders = {name: m for name, s in stack["services"].items() for m in _mounts(s)
               if m.get("source", "").endswith("docker.sock")}
    assert list(holders) == ["visualizer"]
    assert holders["visualizer"]["read_only"] is True
    visualizer = stack["services"]["visualizer"]
    # Whoever reaches the socket's API owns the swarm: no published port, and an overlay no
    # other service joins (operators reach it through an SSH tunnel, docs/deploy.md).
    assert not visualizer.get("ports")
    assert names(visualizer["networks"]) == ["ops"]
    others = [n for n, s in stack["services"].items() if n != "visualizer" and "ops" in names(s.get("networks"))]
    assert not others
    assert "node.role == manager" in visualizer["deploy"]["placement"]["constraints"]


def test_visualizer_image_is_a_required_variable_documented_as_a_digest(stack):
    """No movable default: the operator pins the digest (we cannot resolve one offline)."""
    image = stack["services"]["visualizer"]["image"]
    match = re.fullmatch(r"\$\{VISUALIZER_IMAGE:\?([^}]*)\}", image)
    assert match, f"{image}: the visualizer image must be the required ${{VISUALIZER_IMAGE:?...}}"
    assert "@sha256:" in match.group(1)
    doc = (ROOT / "docs/deploy.md").read_text(encoding="utf-8")
    assert re.search(r"VISUALIZER_IMAGE=dockersamples/visualizer@sha256:", doc)


def test_docker_stack_config_refuses_the_stack_without_a_visualizer_digest():
    docker = shutil.which("docker")
    assert docker, "docker CLI not installed"
    env = {key: value for key, value in os.environ.items() if key != "VISUALIZER_IMAGE"}
    result = subprocess.run([docker, "stack", "config", "-c", str(STACK_FILE)], env=env,
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode != 0 and "VISUALIZER_IMAGE" in result.stderr, result.stderr


def test_web_tier_is_dnsrr_unpublished_and_reached_through_haproxy(stack):
    services = stack["services"]
    web, haproxy, grafana = services["web"], services["haproxy"], services["grafana"]
    assert web["deploy"]["endpoint_mode"] == "dnsrr"
    assert not web.get("ports") and not grafana.get("ports")
    assert published_ports(haproxy) == {8443, 3000}
    # Host-mode ports: no routing mesh, so no IPVS needed (a kernel without it runs this too).
    assert all(isinstance(p, dict) and p["mode"] == "host" for p in haproxy["ports"])
    shared = set(names(haproxy["networks"]))
    assert shared & set(names(web["networks"])) and shared & set(names(grafana["networks"]))
    cfg = HAPROXY_CFG.read_text(encoding="utf-8")
    port = environment(web)["GUNICORN_BIND"].rsplit(":", 1)[1]
    assert re.search(rf"^\s*server-template web \d+ tasks\.web:{port} .*resolvers docker", cfg, re.MULTILINE)
    assert re.search(r"^\s*server-template grafana \d+ tasks\.grafana:3000 .*resolvers docker", cfg, re.MULTILINE)
    assert re.search(r"^\s*nameserver \S+ 127\.0\.0\.11:53$", cfg, re.MULTILINE)


def test_haproxy_reads_its_certificate_and_key_from_docker_secrets(stack):
    haproxy = stack["services"]["haproxy"]
    targets = {entry["source"]: entry["target"] for entry in haproxy["secrets"]}
    cfg = HAPROXY_CFG.read_text(encoding="utf-8")
    crts = set(re.findall(r"\bcrt (\S+)", cfg))
    assert crts == {f"/run/secrets/{targets['tls_certificate']}"}
    # HAProxy loads the key from "<crt>.key" when the certificate file holds none.
    assert targets["tls_key"] == targets["tls_certificate"] + ".key"
    for name in ("tls_certificate", "tls_key"):
        assert stack["secrets"][name]["external"] is True
    assert haproxy["read_only"] is True


def test_grafana_holds_only_its_read_only_redis_password(stack):
    grafana = stack["services"]["grafana"]
    assert "redis_password" not in names(grafana["secrets"])
    assert "redis_grafana_password" in names(grafana["secrets"])
    path = ROOT / "grafana/provisioning/datasources/redis.yaml"
    (source,) = yaml.safe_load(path.read_text(encoding="utf-8"))["datasources"]
    secret = "$__file{/run/secrets/redis_grafana_password}"
    assert source["jsonData"]["acl"] is True and source["jsonData"]["user"] == "grafana"
    assert source["jsonData"]["sentinelAcl"] is True and source["jsonData"]["sentinelUser"] == "grafana"
    assert source["secureJsonData"] == {"password": secret, "sentinelPassword": secret}
    for name in ("redis-1", "redis-2", "redis-sentinel-1", "redis-sentinel-2", "redis-sentinel-3"):
        assert "redis_grafana_password" in names(stack["services"][name]["secrets"]), name


def test_grafana_acl_covers_the_web_tiers_key_prefix():
    conf = (ROOT / "redis/redis.conf").read_text(encoding="utf-8")
    (line,) = [each for each in conf.splitlines() if each.startswith("user grafana ")]
    assert line.split()[2] == "off", "the password is added by the entrypoint, never in git"
    assert f"~{Settings().key_prefix}*" in line.split()


# --- HAProxy with Debian's binary ------------------------------------------------------------

def _haproxy() -> str:
    found = shutil.which("haproxy") or (Path("/usr/sbin/haproxy").is_file() and "/usr/sbin/haproxy")
    if not found:
        pytest.fail("haproxy not found: run `make setup` (installs Debian's haproxy package)", pytrace=False)
    return found


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost, and its key in a separate file (as the secrets)."""
    cert, key = tmp_path / "aeroguard.pem", tmp_path / "aeroguard.pem.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def _local_haproxy_cfg(tmp_path: Path, cert: Path, ports: dict[str, int], web_port: int | None = None) -> Path:
    """haproxy.cfg with only addresses changed: loopback ports, the test certificate, and (to
    serve a request) the web tasks' DNS template replaced by one stand-in task."""
    text = HAPROXY_CFG.read_text(encoding="utf-8")
    replacements = {
        "/run/secrets/aeroguard.pem": str(cert),
        "bind :8443 ": f"bind 127.0.0.1:{ports['api']} ",
        "bind :3000 ": f"bind 127.0.0.1:{ports['grafana']} ",
        "bind 127.0.0.1:8404": f"bind 127.0.0.1:{ports['health']}",
    }
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    if web_port is not None:
        template = re.search(r"^(\s*)server-template web .*$", text, re.MULTILINE)
        text = text.replace(template.group(0), f"{template.group(1)}server web1 127.0.0.1:{web_port} check")
    path = tmp_path / "haproxy.cfg"
    path.write_text(text, encoding="utf-8")
    return path


def test_haproxy_config_passes_haproxy_check(tmp_path):
    cert, _ = _certificate(tmp_path)
    cfg = _local_haproxy_cfg(tmp_path, cert, {"api": 8443, "grafana": 3000, "health": 8404})
    result = subprocess.run([_haproxy(), "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning" not in (result.stdout + result.stderr).lower(), result.stdout + result.stderr

    # The key comes from the second secret: without it the certificate cannot load.
    (tmp_path / "aeroguard.pem.key").unlink()
    missing = subprocess.run([_haproxy(), "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0


class _EchoHandler(http.server.BaseHTTPRequestHandler):
    """A stand-in web task: answers every GET with the headers it received."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        body = json.dumps({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_haproxy_terminates_tls_in_front_of_the_web_tier(tmp_path):
    cert, _ = _certificate(tmp_path)
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    api, grafana, health = free_ports(3)
    cfg = _local_haproxy_cfg(tmp_path, cert, {"api": api, "grafana": grafana, "health": health},
                             web_port=web.server_address[1])
    process = start_logged([_haproxy(), "-W", "-db", "-f", str(cfg)], dict(os.environ), tmp_path / "haproxy.log")
    try:
        context = ssl.create_default_context(cafile=str(cert))
        url = f"https://localhost:{api}/api/v1/health?x=1"

        def answered():
            try:
                with urllib.request.urlopen(url, context=context, timeout=2) as answer:
                    return answer.status, json.loads(answer.read()), {k.lower(): v for k, v in answer.headers.items()}
            except (urllib.error.URLError, ConnectionError):
                return None

        status, echoed, headers = wait_until(answered, 20, "HAProxy to serve over TLS")
        assert status == 200 and echoed["path"] == "/api/v1/health?x=1"
        assert echoed["headers"]["x-forwarded-proto"] == "https"
        assert echoed["headers"]["x-forwarded-for"] == "127.0.0.1"
        assert "max-age=" in headers["strict-transport-security"]

        # Plain HTTP on the TLS port gets no answer from the web tier: keys never cross in clear.
        with socket.create_connection(("127.0.0.1", api), timeout=5) as plain:
            plain.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-API-Key: k\r\n\r\n")
            reply = plain.recv(4096)
        assert b"/api/v1/health" not in reply and not reply.startswith(b"HTTP/1.1 200")

        # The stack's healthcheck line, aimed at this HAProxy's health port, passes.
        stack = yaml.safe_load(STACK_FILE.read_text(encoding="utf-8"))
        kind, *argv = stack["services"]["haproxy"]["healthcheck"]["test"]
        assert kind == "CMD" and argv[:2] == ["bash", "-c"]
        line = argv[2].replace("127.0.0.1/8404", f"127.0.0.1/{health}")
        assert line != argv[2]
        assert subprocess.run(["bash", "-c", line], timeout=20).returncode == 0
    finally:
        stop_pid(process.pid)
        process.wait(timeout=10)
        web.shutdown()
        web.server_close()


def test_haproxy_image_is_debians_haproxy_run_as_a_non_root_user():
    lines = [line.strip() for line in (ROOT / "haproxy/Dockerfile").read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    text = " ".join(lines)
    (base,) = [line.split()[1] for line in lines if line.startswith("FROM ")]
    # FROM ${BASE_IMAGE}: the ARG's default is the image a plain `docker build` uses.
    args = dict(line.split()[1].split("=", 1) for line in lines if line.startswith("ARG ") and "=" in line)
    base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
    # The same Debian release as the haproxy the tests above ran (Debian 12: 2.6).
    assert re.fullmatch(r"debian:bookworm-\d{8}-slim|debian:12\.\d+-slim", base), base
    assert re.search(r"apt-get install -y --no-install-recommends haproxy\b", text)
    user = [line.split()[1] for line in lines if line.startswith("USER ")][-1]
    assert user.split(":")[0] not in {"root", "0", "haproxy"}, "a fixed numeric uid, not root"


# --- Redis and Sentinel with passwords, and Grafana's user ------------------------------------

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
    settings = Settings(redis_sentinels=tuple(("127.0.0.1", port) for port in secured.sentinel_ports),
                        redis_sentinel_master=MASTER_NAME, redis_password=PASSWORD)
    client = make_redis(settings)
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
    settings = Settings(redis_url=url, redis_password=PASSWORD, key_prefix=Settings().key_prefix,
                        hostname="grafana-acl", env="test")
    written = run_demo(settings)
    written.redis.close()
    grafana_url = f"redis://grafana:{GRAFANA_PASSWORD}@127.0.0.1:{secured.master_port}/0"
    reader = Demo(written.app, dataclasses.replace(settings, redis_url=grafana_url, redis_password=None),
                  written.started_ms, written.ended_ms)
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):   # reading as grafana indeed
            reader.redis.set(f"{settings.key_prefix}probe", "x")
        assert reader.sensors() == ["boiler-1", "kettle"]
        queries = _redis_queries()
        assert queries
        for case in queries:
            panel, target = case.values
            rows = reader.run(target, *reader.panel_range(panel))
            assert rows, f"{panel['title']}: no data as the grafana user"
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
