"""Deployment checks: docker-stack.yml, the Dockerfile, and the Redis/Sentinel/Grafana files they use.

`docker stack config` validates the stack file's schema with the client alone; it does not
check references to networks, configs, secrets or volumes, `file:` paths, or `failure_action`
values (PLATFORM.md). These tests check those from the parsed YAML, check the Dockerfile, and
run redis/redis.conf, redis/sentinel.conf and redis/entrypoint.sh against the real local
Redis Stack, so a typo in a directive fails here rather than on a swarm.
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
import redis
import yaml

from harness.process import free_ports
from harness.process import stop_pid
from harness.process import wait_until
from harness.redis_server import find_redis

ROOT = Path(__file__).resolve().parents[1]
STACK_FILE = ROOT / "docker-stack.yml"
APP_IMAGE_VARIABLE = "${AEROGUARD_IMAGE"
SENTINEL_PORT = 26379

UPDATE_FAILURE_ACTIONS = {"continue", "rollback", "pause"}
ROLLBACK_FAILURE_ACTIONS = {"continue", "pause"}
UPDATE_ORDERS = {"start-first", "stop-first"}


# --- helpers ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stack() -> dict:
    with STACK_FILE.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _names(entries) -> list[str]:
    """Names from a service's short (list of names) or long (mapping) reference syntax."""
    if entries is None:
        return []
    if isinstance(entries, dict):
        return list(entries)
    return [entry if isinstance(entry, str) else entry["source"] for entry in entries]


def _named_volumes(service: dict) -> list[str]:
    names = []
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            if entry.get("type", "volume") == "volume":
                names.append(entry["source"])
            continue
        source = entry.split(":", 1)[0]
        if not source.startswith(("/", ".", "~")):
            names.append(source)
    return names


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _config_targets(service: dict) -> dict[str, str]:
    """Config name -> path where the service sees it."""
    return {entry["source"]: entry["target"] for entry in service.get("configs", []) if isinstance(entry, dict)}


def _uses_app_image(service: dict) -> bool:
    return str(service.get("image", "")).startswith(APP_IMAGE_VARIABLE)


def _services_using(stack: dict, predicate) -> list[str]:
    return [name for name, service in stack["services"].items() if predicate(service)]


# --- (a) the docker client's own validation ---------------------------------------------

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


# --- (b) what `docker stack config` does not check ----------------------------------------

def test_stack_is_compose_3_8(stack):
    assert stack["version"] == "3.8"


@pytest.mark.parametrize("kind", ["networks", "configs", "secrets"])
def test_every_reference_is_defined_at_top_level(stack, kind):
    defined = set(stack.get(kind) or {})
    missing = {
        (name, ref)
        for name, service in stack["services"].items()
        for ref in _names(service.get(kind))
        if ref not in defined
    }
    assert not missing, f"{kind} used but not defined: {sorted(missing)}"


def test_every_named_volume_is_defined_at_top_level(stack):
    defined = set(stack.get("volumes") or {})
    missing = {
        (name, volume)
        for name, service in stack["services"].items()
        for volume in _named_volumes(service)
        if volume not in defined
    }
    assert not missing, f"volumes used but not defined: {sorted(missing)}"


@pytest.mark.parametrize("kind", ["networks", "configs", "secrets", "volumes"])
def test_every_top_level_definition_is_used(stack, kind):
    """An unused entry is usually a renamed reference: the service lost what it needed."""
    collect = _named_volumes if kind == "volumes" else (lambda service: _names(service.get(kind)))
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
        for key, value in _environment(service).items():
            if secret_like.search(key):
                assert key.endswith("_FILE") and value.startswith("/run/secrets/"), (name, key)
                assert Path(value).name in _names(service.get("secrets")), (name, key)
    for name, spec in stack["secrets"].items():
        assert spec.get("external") is True, f"secret {name} must be created with `docker secret create`"


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
    assert _uses_app_image(web) and "command" not in web, "web runs the image's gunicorn CMD"


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
    for name in _services_using(stack, _uses_app_image):
        service = stack["services"][name]
        if "command" in service:
            assert service.get("healthcheck", {}).get("disable") is True or "test" in service.get("healthcheck", {}), name


def test_edge_nodes_run_the_edge_cli_with_distinct_node_ids(stack):
    edge = stack["services"]["edge"]
    assert _uses_app_image(edge)
    assert edge["deploy"]["replicas"] == 3
    command = " ".join(edge["command"])
    for flag in ("python -m edge", "--group", "--node-id", "--zk"):
        assert flag in command
    assert _environment(edge)["EDGE_NODE_ID"] == "{{.Task.Slot}}"
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
    env = {key: value.replace("{{.Task.Slot}}", "2") for key, value in _environment(edge).items()}
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
    assert "api_keys" in _names(edge["secrets"])
    assert _environment(edge)["ZK_AUTH_FILE"] == "/run/secrets/zk_auth" and "zk_auth" in _names(edge["secrets"])

    secret.unlink()
    missing = subprocess.run([shell, flag, script], env=env, capture_output=True, text=True, timeout=30)
    assert missing.returncode != 0, "the edge must not start without its API key"


def test_zookeeper_ensemble_is_swarm_safe(stack):
    zk_services = {name: s for name, s in stack["services"].items() if str(s["image"]).startswith("zookeeper:")}
    assert len(zk_services) == 3
    ids = {}
    for name, service in zk_services.items():
        env = _environment(service)
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
        assert set(_environment(stack["services"][name])["ZK_HOSTS"].split(",")) == expected_hosts


def test_redis_master_replica_and_three_sentinels(stack):
    services = stack["services"]
    servers = [n for n, s in services.items() if "redis-stack-server" in str(s["image"]) and s["command"][0] == "server"]
    sentinels = [n for n, s in services.items() if "redis-stack-server" in str(s["image"]) and s["command"][0] == "sentinel"]
    assert len(servers) == 2 and len(sentinels) == 3
    for name in servers + sentinels:
        assert re.fullmatch(r"redis/redis-stack-server:\d+\.\d+\.\d+-v\d+", services[name]["image"])
        assert "redis_password" in _names(services[name]["secrets"])
        assert _named_volumes(services[name]), f"{name} keeps no state across restarts"
    for name in servers:
        targets = _config_targets(services[name])
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

    web_env = _environment(services["web"])
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


def test_visualizer_runs_on_a_manager_with_the_docker_socket(stack):
    visualizer = stack["services"]["visualizer"]
    assert visualizer["image"].startswith("${VISUALIZER_IMAGE:?")
    assert "node.role == manager" in visualizer["deploy"]["placement"]["constraints"]
    assert any(v.startswith("/var/run/docker.sock:") for v in visualizer["volumes"])


def test_grafana_provisioning_matches_the_stack(stack):
    grafana = stack["services"]["grafana"]
    targets = _config_targets(grafana)
    files = {name: ROOT / stack["configs"][name]["file"] for name in targets}
    datasources = yaml.safe_load(files["grafana_datasources"].read_text(encoding="utf-8"))["datasources"]
    provider = yaml.safe_load(files["grafana_dashboard_provider"].read_text(encoding="utf-8"))["providers"][0]
    dashboard = json.loads(files["grafana_dashboard_aeroguard"].read_text(encoding="utf-8"))

    assert targets["grafana_datasources"].startswith("/etc/grafana/provisioning/datasources/")
    assert targets["grafana_dashboard_provider"].startswith("/etc/grafana/provisioning/dashboards/")
    assert str(Path(targets["grafana_dashboard_aeroguard"]).parent) == provider["options"]["path"]

    (source,) = datasources
    assert source["type"] == "redis-datasource"
    assert source["jsonData"]["client"] == "sentinel"
    assert source["jsonData"]["sentinelName"] == _environment(stack["services"]["web"])["REDIS_SENTINEL_MASTER"]
    assert source["secureJsonData"]["password"] == "$__file{/run/secrets/redis_grafana_password}"
    assert "redis_grafana_password" in _names(grafana["secrets"])
    plugins = _environment(grafana)["GF_INSTALL_PLUGINS"].split()
    assert plugins[0] == "redis-datasource" and re.fullmatch(r"\d+\.\d+\.\d+", plugins[1])
    assert _environment(grafana)["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"

    panels = dashboard["panels"]
    assert panels
    for panel in panels:
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"], panel["title"]
    filters = [target.get("filter", "") for panel in panels for target in panel["targets"]]
    assert any(re.search(r"(^| )kind=reading( |$)", f) for f in filters), "no readings panel"


# --- (c) the Dockerfile -----------------------------------------------------------------

def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    logical, current = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if current.strip():
            instruction, _, args = current.strip().partition(" ")
            logical.append((instruction.upper(), args.strip()))
        current = ""
    return logical


def test_dockerfile_uses_a_pinned_slim_python_base():
    bases = [args for instr, args in _dockerfile() if instr == "FROM"]
    assert len(bases) == 1
    # FROM ${BASE_IMAGE}: the ARG's default is the image a plain `docker build` uses.
    defaults = dict(args.split("=", 1) for instr, args in _dockerfile() if instr == "ARG" and "=" in args)
    bases = [re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], bases[0])]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", bases[0])


def test_dockerfile_runs_as_a_non_root_user():
    users = [args for instr, args in _dockerfile() if instr == "USER"]
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


def test_dockerfile_has_a_healthcheck_on_healthz():
    checks = [args for instr, args in _dockerfile() if instr == "HEALTHCHECK"]
    assert len(checks) == 1 and "/healthz" in checks[0]
    assert "curl" not in checks[0], "slim images have no curl"


def test_dockerfile_installs_requirements_txt_only():
    installs = [args for instr, args in _dockerfile() if instr == "RUN" and "pip install" in args]
    assert installs
    for args in installs:
        # Every pip install in the image reads requirements.txt and names no package directly.
        assert re.search(r"pip install(\s+--\S+)*\s+-r requirements\.txt\s*($|&&)", args), args


def _requirement_lines(path: Path) -> list[str]:
    """Lines of a requirements file and of the files it includes with -r."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith(("-r ", "--requirement ")):
            lines += _requirement_lines(path.parent / line.split(None, 1)[1])
        elif line:
            lines.append(line)
    return lines


def test_the_image_requirements_carry_no_tensorflow():
    lines = _requirement_lines(ROOT / "requirements.txt")
    assert lines
    assert not [line for line in lines if "tensorflow" in line.lower() or line.lower().startswith(("keras", "tf-"))]


def test_dockerfile_runs_gunicorn_from_the_web_package():
    cmds = [args for instr, args in _dockerfile() if instr == "CMD"]
    assert json.loads(cmds[-1]) == ["gunicorn", "-c", "webapp/gunicorn_conf.py", "webapp:create_app()"]
    envs = " ".join(args for instr, args in _dockerfile() if instr == "ENV")
    assert "GUNICORN_BIND=0.0.0.0:8000" in envs


def test_dockerignore_sends_only_what_the_image_copies():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", "allow-list: the 2+ GB .venv must never reach the build context"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = {args.split()[0].rstrip("/") for instr, args in _dockerfile() if instr == "COPY"}
    assert copied <= allowed


# --- the Redis files on a real Redis Stack ------------------------------------------------

class RedisFiles:
    """redis/ copied to a temporary folder with the container paths pointed at local ones.

    Only paths change: module, data dir and Sentinel's master address and port. Every other
    directive is the one the stack runs.
    """

    def __init__(self, tmp_path: Path, module: Path, password: str, grafana_password: str = "gr4fana-r3ads"):
        self.conf_dir = tmp_path / "conf"
        self.conf_dir.mkdir()
        self.secret = tmp_path / "redis_password"
        self.secret.write_text(password, encoding="utf-8")
        self.grafana_secret = tmp_path / "redis_grafana_password"
        self.grafana_secret.write_text(grafana_password, encoding="utf-8")
        self.module = module
        shutil.copy(ROOT / "redis/entrypoint.sh", self.conf_dir / "entrypoint.sh")

    def write(self, name: str, replacements: dict[str, str]) -> None:
        text = (ROOT / "redis" / name).read_text(encoding="utf-8")
        for old, new in replacements.items():
            assert text.count(old) == 1, f"{name}: expected exactly one {old!r}"
            text = text.replace(old, new)
        (self.conf_dir / name).write_text(text, encoding="utf-8")

    def env(self, paths, data_dir: Path, **extra: str) -> dict[str, str]:
        return paths.env() | {
            "AEROGUARD_REDIS_BIN": str(paths.bin_dir),
            "AEROGUARD_REDIS_CONF_DIR": str(self.conf_dir),
            "AEROGUARD_REDIS_DATA_DIR": str(data_dir),
            "REDIS_PASSWORD_FILE": str(self.secret),
            "REDIS_GRAFANA_PASSWORD_FILE": str(self.grafana_secret),
            **extra,
        }


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


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
            processes.append(_start(argv, files.env(paths, data), tmp_path / f"{name}.log"))
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
        wait_until(lambda: replica.exists("t:deploy") and replica.execute_command("TS.GET", "t:deploy"), 10, "sample replicated")

        health = files.env(paths, tmp_path, AEROGUARD_REDIS_PORT=str(master_port))
        assert subprocess.run(entrypoint + ["health", "server"], env=health, timeout=10).returncode == 0

        sentinel_data = tmp_path / "sentinel"
        sentinel_data.mkdir()
        processes.append(_start(entrypoint + ["sentinel", "127.0.0.1"],
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


# --- (d) Prometheus, TF Serving, networks and ports -----------------------------------------

SERVING_IMAGE_VARIABLE = "${AEROGUARD_SERVING_IMAGE"
PUBLISHED_PORTS = {"haproxy": {8443, 3000}}   # TLS in front of web and Grafana
PROMTOOL_CACHE = ROOT / ".cache/prometheus/usr/bin/promtool"


def promtool_path() -> str:
    """promtool from PATH, or the copy `make setup` unpacks from Debian's prometheus package."""
    found = shutil.which("promtool") or (str(PROMTOOL_CACHE) if PROMTOOL_CACHE.is_file() else None)
    if found is None:
        pytest.fail("promtool not found: run `make setup` (unpacks it from Debian's prometheus package)",
                    pytrace=False)
    return found


def _flags(service: dict) -> dict[str, str]:
    """``--name=value`` arguments of a service's command as a mapping."""
    return dict(arg[2:].split("=", 1) for arg in service.get("command", []) if arg.startswith("--") and "=" in arg)


def _published(service: dict) -> set[int]:
    ports = set()
    for port in service.get("ports", []):
        ports.add(int(port["published"]) if isinstance(port, dict) else int(str(port).split(":")[0]))
    return ports


def test_only_user_facing_ports_are_published(stack):
    published = {name: _published(s) for name, s in stack["services"].items() if _published(s)}
    assert published == PUBLISHED_PORTS


def test_every_network_connects_at_least_two_services(stack):
    for network in stack["networks"]:
        users = [name for name, s in stack["services"].items() if network in _names(s.get("networks"))]
        assert len(users) >= 2 or users == ["visualizer"], (network, users)


def test_no_secret_has_a_default_in_the_stack_file():
    """`${VAR:-default}` is for image tags only: a secret-looking variable never gets a default."""
    text = STACK_FILE.read_text(encoding="utf-8")
    for name in re.findall(r"\$\{(\w+):?-", text):
        assert not re.search(r"PASSWORD|SECRET|TOKEN|KEY", name), name


def test_prometheus_config_passes_promtool():
    result = subprocess.run([promtool_path(), "check", "config", str(ROOT / "prometheus/prometheus.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_every_web_task_and_itself(stack):
    config = yaml.safe_load((ROOT / "prometheus/prometheus.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["prometheus"]["static_configs"][0]["targets"] == ["localhost:9090"]
    web = jobs["web"]
    (discovery,) = web["dns_sd_configs"]
    # tasks.<service> resolves to every task's IP; the bare name is the VIP (one replica per scrape).
    assert discovery["names"] == ["tasks.web"] and discovery["type"] == "A"
    assert discovery["port"] == int(_environment(stack["services"]["web"])["GUNICORN_BIND"].rsplit(":", 1)[1])
    assert web.get("metrics_path", "/metrics") == "/metrics"


def test_prometheus_service_is_pinned_configured_and_internal(stack):
    prometheus = stack["services"]["prometheus"]
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", prometheus["image"])
    flags = _flags(prometheus)
    assert _config_targets(prometheus)["prometheus_config"] == flags["config.file"]
    assert stack["configs"]["prometheus_config"]["file"] == "./prometheus/prometheus.yml"
    assert any(v.endswith(":" + flags["storage.tsdb.path"]) for v in prometheus["volumes"])
    assert not prometheus.get("ports")
    shared = set(_names(prometheus["networks"]))
    for peer in ("web", "grafana"):
        assert shared & set(_names(stack["services"][peer]["networks"])), f"{peer} cannot reach prometheus"


def test_grafana_reaches_prometheus_by_its_service_name(stack):
    grafana = stack["services"]["grafana"]
    target = _config_targets(grafana)["grafana_datasource_prometheus"]
    assert target.startswith("/etc/grafana/provisioning/datasources/")
    (source,) = yaml.safe_load((ROOT / stack["configs"]["grafana_datasource_prometheus"]["file"]).read_text())["datasources"]
    assert source["url"] == "http://prometheus:9090" and "prometheus" in stack["services"]


def _serving_dockerfile() -> list[tuple[str, str]]:
    return [(line.split()[0].upper(), line.split(None, 1)[1]) for line in
            (ROOT / "serving/Dockerfile").read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]


def test_serving_image_matches_the_tensorflow_that_exported_the_models():
    (base,) = [args for instr, args in _serving_dockerfile() if instr == "FROM"]
    pins = dict(line.split("==") for line in _requirement_lines(ROOT / "requirements-ml.txt") if "==" in line)
    assert base == f"tensorflow/serving:{pins['tensorflow-cpu']}"
    assert ("COPY", "models/ /models/") in _serving_dockerfile()


def test_serving_build_context_sends_every_model_models_config_names():
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = text_format.Parse((ROOT / "serving/models/models.config").read_text(encoding="utf-8"),
                               model_server_config_pb2.ModelServerConfig())
    patterns = [line.strip() for line in (ROOT / "serving/.dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", "allow-list: the context is only what TF Serving serves"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    assert "models/models.config" in allowed
    for model in config.model_config_list.config:
        assert model.base_path.startswith("/models/")
        local = model.base_path.removeprefix("/")
        assert local in allowed, f"{local} is not sent to the serving image build"
        versions = [p for p in (ROOT / "serving" / local).iterdir() if p.name.isdigit()]
        assert versions and all((v / "saved_model.pb").is_file() for v in versions), model.name


def test_tf_serving_service_serves_models_config_with_batching_and_warmup(stack):
    serving = stack["services"]["tf-serving"]
    assert str(serving["image"]).startswith(SERVING_IMAGE_VARIABLE)
    assert serving["deploy"]["replicas"] >= 1
    flags = _flags(serving)
    assert flags["model_config_file"] == "/models/models.config"   # where serving/Dockerfile copies it
    assert flags["enable_batching"] == "true" and flags["enable_model_warmup"] == "true"
    assert _config_targets(serving)["tfserving_batching"] == flags["batching_parameters_file"]
    assert stack["configs"]["tfserving_batching"]["file"] == "./serving/batching_parameters.txt"
    assert not serving.get("ports"), "gRPC 8500 and REST 8501 stay internal"
    assert set(_names(serving["networks"])) & set(_names(stack["services"]["web"]["networks"]))
    assert "8501" in " ".join(serving["healthcheck"]["test"])


def test_batching_parameters_are_text_format_batching_parameters():
    known = {"max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads",
             "thread_pool_name", "allowed_batch_sizes", "pad_variable_length_inputs"}
    lines = [line.strip() for line in (ROOT / "serving/batching_parameters.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    values = {}
    for line in lines:
        match = re.fullmatch(r"(\w+) \{ value: (\d+) \}", line)
        assert match, f"not a `name {{ value: N }}` line: {line}"
        values[match.group(1)] = int(match.group(2))
    assert set(values) <= known
    assert values["max_batch_size"] >= 1 and values["batch_timeout_micros"] <= 10_000


def test_web_tier_asks_tf_serving_over_grpc(stack):
    from webapp.config import Settings
    from webapp.inference import backend_kind

    env = _environment(stack["services"]["web"])
    settings = Settings.from_env({key: value for key, value in env.items() if not key.endswith("_FILE")})
    assert backend_kind(settings) == "grpc"
    assert settings.serving_host == "tf-serving" and settings.serving_host in stack["services"]
    assert settings.serving_grpc_port == 8500


def test_tf_serving_healthcheck_passes_on_the_rest_api_and_fails_without_it(stack):
    """The healthcheck's own bash line, aimed at the protocol-faithful stand-in's REST port."""
    from harness.tfserving_standin import Registry
    from harness.tfserving_standin import StandIn

    kind, *argv = stack["services"]["tf-serving"]["healthcheck"]["test"]
    assert kind == "CMD" and argv[:2] == ["bash", "-c"]
    models = ROOT / "serving/models"
    server = StandIn(Registry(models / "models.config", models)).start()
    try:
        line = argv[2].replace("/8501", f"/{server.rest_port}")
        assert subprocess.run(["bash", "-c", line], timeout=20).returncode == 0
    finally:
        server.stop()
    (closed,) = free_ports(1)
    line = argv[2].replace("/8501", f"/{closed}")
    assert subprocess.run(["bash", "-c", line], capture_output=True, timeout=20).returncode != 0


def test_deploy_doc_names_every_service_and_pinned_image(stack):
    """docs/deploy.md's table stays true: every service and third-party image tag is in it."""
    doc = (ROOT / "docs/deploy.md").read_text(encoding="utf-8")
    assert f"one stack with {len(stack['services'])} services" in doc
    for name, service in stack["services"].items():
        assert re.search(rf"`{re.escape(name)}`|{re.escape(name.rstrip('0123456789'))}", doc), name
        image = str(service["image"])
        if not image.startswith("${"):
            assert image in doc, f"docs/deploy.md does not name {image}"
    base = next(args for instr, args in _serving_dockerfile() if instr == "FROM")
    assert base in doc
