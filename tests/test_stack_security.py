"""Security of the Swarm stack (issue 10, finding 11): what runs where, with which rights.

Static checks of docker-stack.yml: encrypted overlays, dropped capabilities, read-only root
filesystems, the Docker socket, the visualizer's image, the web tier behind HAProxy, Grafana's
secrets and ACL. The same files run for real where they can here: haproxy/haproxy.cfg in
tests/test_stack_haproxy.py, redis/ with passwords in tests/test_stack_redis_auth.py.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy_files import environment
from tests.deploy_files import names
from tests.deploy_files import published_ports
from webapp.config import Settings

ROOT = Path(__file__).resolve().parents[1]
STACK_FILE = ROOT / "docker-stack.yml"
HAPROXY_CFG = ROOT / "haproxy/haproxy.cfg"

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
    assert f"~{Settings().storage.key_prefix}*" in line.split()
