"""Deployment checks, the stack file: docker-stack.yml's references, policies and services.

`docker stack config` validates the stack file's schema with the client alone; it does not
check references to networks, configs, secrets or volumes, `file:` paths, or `failure_action`
values. These tests run it, then check those from the parsed YAML, and run the edge service's
real command. The images and the services' own configuration files are checked in
``tests/test_deploy_images.py``, the Redis files in ``tests/test_deploy_redis.py``.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy_files import ROOT
from tests.deploy_files import STACK_FILE
from tests.deploy_files import environment
from tests.deploy_files import load_stack
from tests.deploy_files import named_volumes
from tests.deploy_files import names
from tests.deploy_files import published_ports
from tests.deploy_files import services_using
from tests.deploy_files import serving_dockerfile
from tests.deploy_files import uses_app_image

UPDATE_FAILURE_ACTIONS = {"continue", "rollback", "pause"}
ROLLBACK_FAILURE_ACTIONS = {"continue", "pause"}
UPDATE_ORDERS = {"start-first", "stop-first"}
PUBLISHED_PORTS = {"haproxy": {8443, 3000}}   # TLS in front of web and Grafana


@pytest.fixture(scope="module")
def stack() -> dict:
    return load_stack()


def test_docker_stack_config_accepts_the_stack_file():
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker CLI not installed: schema check not run (the YAML checks below still run)")
    # The visualizer's image is a required variable (a digest, tests/test_stack_security.py).
    env = os.environ | {"VISUALIZER_IMAGE": "dockersamples/visualizer@sha256:" + "0" * 64}
    result = subprocess.run(
        [docker, "stack", "config", "-c", str(STACK_FILE)],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=env,
    )
    assert result.returncode == 0, result.stderr
    # "Ignoring unsupported options" would mean a key silently dropped by Swarm.
    assert "unsupported" not in result.stderr.lower(), result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert resolved["services"]["web"]["deploy"]["replicas"] == 5
    assert "{{.Task.Slot}}" in resolved["services"]["edge"]["environment"]["EDGE_NODE_ID"]


def test_stack_is_compose_3_8(stack):
    assert stack["version"] == "3.8"


@pytest.mark.parametrize("kind", ["networks", "configs", "secrets"])
def test_every_reference_is_defined_at_top_level(stack, kind):
    defined = set(stack.get(kind) or {})
    missing = {
        (name, ref)
        for name, service in stack["services"].items()
        for ref in names(service.get(kind))
        if ref not in defined
    }
    assert not missing, f"{kind} used but not defined: {sorted(missing)}"


def test_every_named_volume_is_defined_at_top_level(stack):
    defined = set(stack.get("volumes") or {})
    missing = {
        (name, volume)
        for name, service in stack["services"].items()
        for volume in named_volumes(service)
        if volume not in defined
    }
    assert not missing, f"volumes used but not defined: {sorted(missing)}"


@pytest.mark.parametrize("kind", ["networks", "configs", "secrets", "volumes"])
def test_every_top_level_definition_is_used(stack, kind):
    """An unused entry is usually a renamed reference: the service lost what it needed."""
    collect = named_volumes if kind == "volumes" else (lambda service: names(service.get(kind)))
    used = {ref for service in stack["services"].values() for ref in collect(service)}
    assert set(stack.get(kind) or {}) <= used


@pytest.mark.parametrize("kind", ["configs", "secrets"])
def test_every_file_exists(stack, kind):
    for name, spec in (stack.get(kind) or {}).items():
        if "file" in spec:
            assert (ROOT / spec["file"]).is_file(), f"{kind}.{name}: {spec['file']} does not exist"
        else:
            assert spec.get("external") is True, f"{kind}.{name} is neither a file nor external"


def test_secrets_are_docker_secrets_never_values(stack):
    """No password, key or token in an environment block: only *_FILE paths to /run/secrets."""
    secret_like = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY", re.IGNORECASE)
    for name, service in stack["services"].items():
        for key, value in environment(service).items():
            if secret_like.search(key):
                assert key.endswith("_FILE") and value.startswith("/run/secrets/"), (name, key)
                assert Path(value).name in names(service.get("secrets")), (name, key)
    for name, spec in stack["secrets"].items():
        assert spec.get("external") is True, f"secret {name} must be created with `docker secret create`"


def test_no_secret_has_a_default_in_the_stack_file():
    """`${VAR:-default}` is for image tags only: a secret-looking variable never gets a default."""
    text = STACK_FILE.read_text(encoding="utf-8")
    for name in re.findall(r"\$\{(\w+):?-", text):
        assert not re.search(r"PASSWORD|SECRET|TOKEN|KEY", name), name


@pytest.mark.parametrize("block, allowed", [
    ("update_config", UPDATE_FAILURE_ACTIONS),
    ("rollback_config", ROLLBACK_FAILURE_ACTIONS),
])
def test_update_and_rollback_policies_are_valid(stack, block, allowed):
    for name, service in stack["services"].items():
        policy = (service.get("deploy") or {}).get(block)
        if policy is None:
            continue
        assert policy.get("failure_action", "pause") in allowed, (name, block, policy)
        assert policy.get("order", "stop-first") in UPDATE_ORDERS, (name, block, policy)


def test_web_tier_has_five_replicas_rolling_start_first_with_rollback(stack):
    web = stack["services"]["web"]
    deploy = web["deploy"]
    assert deploy["replicas"] == 5
    assert deploy["update_config"]["order"] == "start-first"
    assert deploy["update_config"]["failure_action"] == "rollback"
    assert deploy["update_config"]["monitor"], "rollback needs a monitor window to notice failures"
    assert deploy["rollback_config"]
    assert deploy["resources"]["limits"]["memory"]
    assert deploy["resources"]["limits"]["cpus"]
    assert "/healthz" in " ".join(web["healthcheck"]["test"])
    assert not web.get("ports") and web["deploy"]["endpoint_mode"] == "dnsrr", "HAProxy publishes it"
    assert uses_app_image(web) and "command" not in web, "web runs the image's gunicorn CMD"


def test_images_are_pinned(stack):
    for name, service in stack["services"].items():
        image = str(service["image"])
        if image.startswith("${"):
            continue  # the operator's own pushed tag, or the visualizer's required digest
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image}"


def test_task_templates_only_where_swarm_expands_them(stack):
    """Swarm expands {{...}} in env, hostname and mounts only; in `command` it stays literal."""
    for name, service in stack["services"].items():
        for key in ("command", "entrypoint", "healthcheck", "image"):
            assert "{{" not in json.dumps(service.get(key)), (name, key)


def test_services_of_the_app_image_have_a_healthcheck_that_fits_them(stack):
    """The image's HEALTHCHECK probes gunicorn; a service running another command must override it."""
    for name in services_using(stack, uses_app_image):
        service = stack["services"][name]
        if "command" in service:
            healthcheck = service.get("healthcheck", {})
            assert healthcheck.get("disable") is True or "test" in healthcheck, name


def test_only_user_facing_ports_are_published(stack):
    published = {name: published_ports(s) for name, s in stack["services"].items() if published_ports(s)}
    assert published == PUBLISHED_PORTS


def test_every_network_connects_at_least_two_services(stack):
    for network in stack["networks"]:
        users = [name for name, s in stack["services"].items() if network in names(s.get("networks"))]
        assert len(users) >= 2 or users == ["visualizer"], (network, users)


def test_edge_nodes_run_the_edge_cli_with_distinct_node_ids(stack):
    edge = stack["services"]["edge"]
    assert uses_app_image(edge)
    assert edge["deploy"]["replicas"] == 3
    command = " ".join(edge["command"])
    for flag in ("python -m edge", "--group", "--node-id", "--zk"):
        assert flag in command
    assert environment(edge)["EDGE_NODE_ID"] == "{{.Task.Slot}}"
    # Two tasks of one slot at once would claim the same node id in discovery.
    assert edge["deploy"]["update_config"]["order"] == "stop-first"


def test_edge_command_and_environment_reach_the_edge_cli(stack, tmp_path):
    """Run the edge service's real shell command, with only `python -m edge` swapped for a
    probe that parses its arguments with the edge's own parser, as task slot 2 would."""
    edge = stack["services"]["edge"]
    secret = tmp_path / "api_keys"
    secret.write_text("key-one\nkey-two\n", encoding="utf-8")
    shell, flag, script = edge["command"]
    # Compose turns $$ into a literal $; the secret is mounted at /run/secrets/<name>.
    script = script.replace("$$", "$").replace("/run/secrets/api_keys", str(secret))
    probe = ("import json, os, sys; from edge.config import EdgeSettings; "
             "s = EdgeSettings.from_args(sys.argv[1:]); "
             "print(json.dumps([s.group, s.node_id, s.zk_hosts, s.spool_dir, s.api_key, s.defaults['api_urls']]))")
    assert script.count("python -m edge") == 1
    script = script.replace("python -m edge", f"{shlex.quote(sys.executable)} -c {shlex.quote(probe)}")
    env = {key: value.replace("{{.Task.Slot}}", "2") for key, value in environment(edge).items()}
    zk_auth = tmp_path / "zk_auth"
    zk_auth.write_text("aeroguard:zk-pass", encoding="utf-8")
    env |= {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "ZK_AUTH_FILE": str(zk_auth)}
    result = subprocess.run([shell, flag, script], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    group, node_id, zk_hosts, spool_dir, api_key, api_urls = json.loads(result.stdout)
    assert (group, node_id, zk_hosts) == ("boiler-1", "2", "zk1:2181,zk2:2181,zk3:2181")
    assert spool_dir == "/var/lib/aeroguard/spool/2"
    assert api_key == "key-one"
    assert api_urls == ["http://web:8000"]
    assert "api_keys" in names(edge["secrets"])
    assert environment(edge)["ZK_AUTH_FILE"] == "/run/secrets/zk_auth" and "zk_auth" in names(edge["secrets"])

    secret.unlink()
    missing = subprocess.run([shell, flag, script], env=env, capture_output=True, text=True, timeout=30)
    assert missing.returncode != 0, "the edge must not start without its API key"


def test_zookeeper_ensemble_is_swarm_safe(stack):
    zk_services = {name: s for name, s in stack["services"].items() if str(s["image"]).startswith("zookeeper:")}
    assert len(zk_services) == 3
    ids = {}
    for name, service in zk_services.items():
        env = environment(service)
        assert service["image"].startswith("zookeeper:3.8")
        assert env["ZOO_TICK_TIME"] == "500"
        assert {"ruok", "srvr"} <= set(env["ZOO_4LW_COMMANDS_WHITELIST"].split(","))
        assert "ruok" in " ".join(service["healthcheck"]["test"])
        assert {"/data", "/datalog"} <= {v.split(":")[1] for v in service["volumes"]}
        my_id = env["ZOO_MY_ID"]
        ids[my_id] = name
        servers = dict(entry.split("=", 1) for entry in env["ZOO_SERVERS"].split())
        assert set(servers) == {f"server.{n}" for n in range(1, 4)}
        for key, address in servers.items():
            host = address.split(":")[0]
            if key == f"server.{my_id}":
                # The service name is a VIP the task cannot bind its quorum ports on.
                assert host == "0.0.0.0", (name, key)
            else:
                assert host in zk_services and host != name, (name, key)
    assert sorted(ids) == ["1", "2", "3"]
    expected_hosts = {f"{name}:2181" for name in zk_services}
    for name in ("web", "edge"):
        assert set(environment(stack["services"][name])["ZK_HOSTS"].split(",")) == expected_hosts


def test_visualizer_runs_on_a_manager_with_the_docker_socket(stack):
    visualizer = stack["services"]["visualizer"]
    assert visualizer["image"].startswith("${VISUALIZER_IMAGE:?")
    assert "node.role == manager" in visualizer["deploy"]["placement"]["constraints"]
    assert any(v.startswith("/var/run/docker.sock:") for v in visualizer["volumes"])


def test_deploy_doc_names_every_service_and_pinned_image(stack):
    """docs/deploy.md's table stays true: every service and third-party image tag is in it."""
    doc = (ROOT / "docs/deploy.md").read_text(encoding="utf-8")
    assert f"one stack with {len(stack['services'])} services" in doc
    for name, service in stack["services"].items():
        assert re.search(rf"`{re.escape(name)}`|{re.escape(name.rstrip('0123456789'))}", doc), name
        image = str(service["image"])
        if not image.startswith("${"):
            assert image in doc, f"docs/deploy.md does not name {image}"
    base = next(args for instr, args in serving_dockerfile() if instr == "FROM")
    assert base in doc


def test_the_redis_cluster_override_merges_into_the_stack():
    """deploy/swarm-cluster.yml (`make swarm-up REDIS=cluster`): six cluster nodes announcing
    their service names, the one-shot that forms the cluster, the web tier pointed at them, and
    the Sentinel topology kept off every node (harness/swarm/deploy.py scales it to 0)."""
    from harness.swarm.deploy import CLUSTER_FILE
    from harness.swarm.deploy import SENTINEL_SERVICES

    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker CLI not installed: the merge is not checked")
    env = os.environ | {"VISUALIZER_IMAGE": "dockersamples/visualizer@sha256:" + "0" * 64}
    result = subprocess.run([docker, "stack", "config", "-c", str(STACK_FILE), "-c", str(CLUSTER_FILE)],
                            capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr
    assert "unsupported" not in result.stderr.lower(), result.stderr
    merged = yaml.safe_load(result.stdout)
    services = merged["services"]
    nodes = [f"redis-cluster-{i}" for i in range(1, 7)]
    for node in nodes:
        service = services[node]
        assert service["command"][:2] == ["cluster", node]
        assert service["deploy"]["endpoint_mode"] == "dnsrr"
        assert {c["source"] for c in service["configs"]} <= set(merged["configs"])
        assert "redis_password" in {s["source"] for s in service["secrets"]}
        assert service["volumes"][0]["source"] in merged["volumes"]
    create = services["redis-cluster-create"]
    assert create["command"] == ["cluster-create", *(f"{node}:6379" for node in nodes)]
    assert create["deploy"]["restart_policy"]["condition"] == "on-failure"
    web = services["web"]["environment"]
    assert web["REDIS_CLUSTER_NODES"] == ",".join(f"{node}:6379" for node in nodes)
    assert web["REDIS_WAIT_REPLICAS"] == "1"
    for name in SENTINEL_SERVICES:
        assert services[name]["deploy"]["placement"]["constraints"] == ["node.labels.aeroguard.omitted == true"]
