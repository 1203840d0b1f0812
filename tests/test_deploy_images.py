"""Deployment checks, the images and the services' own files: the app Dockerfile and its
requirements, the TF Serving image, service and batching file, Prometheus' and Grafana's
provisioning as the stack mounts them.
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from harness.process import free_ports
from tests.deploy_files import ROOT
from tests.deploy_files import command_flags
from tests.deploy_files import config_targets
from tests.deploy_files import dockerfile
from tests.deploy_files import environment
from tests.deploy_files import load_stack
from tests.deploy_files import names
from tests.deploy_files import promtool_path
from tests.deploy_files import requirement_lines
from tests.deploy_files import serving_dockerfile

SERVING_IMAGE_VARIABLE = "${AEROGUARD_SERVING_IMAGE"


@pytest.fixture(scope="module")
def stack() -> dict:
    return load_stack()


def test_dockerfile_uses_a_pinned_slim_python_base():
    bases = [args for instr, args in dockerfile() if instr == "FROM"]
    assert len(bases) == 1
    # FROM ${BASE_IMAGE}: the ARG's default is the image a plain `docker build` uses.
    defaults = dict(args.split("=", 1) for instr, args in dockerfile() if instr == "ARG" and "=" in args)
    bases = [re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], bases[0])]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", bases[0])


def test_dockerfile_runs_as_a_non_root_user():
    users = [args for instr, args in dockerfile() if instr == "USER"]
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


def test_dockerfile_has_a_healthcheck_on_healthz():
    checks = [args for instr, args in dockerfile() if instr == "HEALTHCHECK"]
    assert len(checks) == 1 and "/healthz" in checks[0]
    assert "curl" not in checks[0], "slim images have no curl"


def test_dockerfile_installs_requirements_txt_only():
    installs = [args for instr, args in dockerfile() if instr == "RUN" and "pip install" in args]
    assert installs
    for args in installs:
        # Every pip install in the image reads requirements.txt and names no package directly.
        assert re.search(r"pip install(\s+--\S+)*\s+-r requirements\.txt\s*($|&&)", args), args


def test_the_image_requirements_carry_no_tensorflow():
    lines = requirement_lines(ROOT / "requirements.txt")
    assert lines
    assert not [line for line in lines if "tensorflow" in line.lower() or line.lower().startswith(("keras", "tf-"))]


def test_dockerfile_runs_gunicorn_from_the_web_package():
    cmds = [args for instr, args in dockerfile() if instr == "CMD"]
    assert json.loads(cmds[-1]) == ["gunicorn", "-c", "webapp/gunicorn_conf.py", "webapp:create_app()"]
    envs = " ".join(args for instr, args in dockerfile() if instr == "ENV")
    assert "GUNICORN_BIND=0.0.0.0:8000" in envs


def test_dockerignore_sends_only_what_the_image_copies():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", "allow-list: the 2+ GB .venv must never reach the build context"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = {args.split()[0].rstrip("/") for instr, args in dockerfile() if instr == "COPY"}
    assert copied <= allowed


def test_serving_image_matches_the_tensorflow_that_exported_the_models():
    (base,) = [args for instr, args in serving_dockerfile() if instr == "FROM"]
    pins = dict(line.split("==") for line in requirement_lines(ROOT / "requirements-ml.txt") if "==" in line)
    assert base == f"tensorflow/serving:{pins['tensorflow-cpu']}"
    assert ("COPY", "models/ /models/") in serving_dockerfile()


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
    flags = command_flags(serving)
    assert flags["model_config_file"] == "/models/models.config"   # where serving/Dockerfile copies it
    assert flags["enable_batching"] == "true" and flags["enable_model_warmup"] == "true"
    assert config_targets(serving)["tfserving_batching"] == flags["batching_parameters_file"]
    assert stack["configs"]["tfserving_batching"]["file"] == "./serving/batching_parameters.txt"
    assert not serving.get("ports"), "gRPC 8500 and REST 8501 stay internal"
    assert set(names(serving["networks"])) & set(names(stack["services"]["web"]["networks"]))
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

    env = environment(stack["services"]["web"])
    settings = Settings.from_env({key: value for key, value in env.items() if not key.endswith("_FILE")})
    assert backend_kind(settings) == "grpc"
    assert settings.inference.serving_host == "tf-serving" and settings.inference.serving_host in stack["services"]
    assert settings.inference.serving_grpc_port == 8500


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
    assert discovery["port"] == int(environment(stack["services"]["web"])["GUNICORN_BIND"].rsplit(":", 1)[1])
    assert web.get("metrics_path", "/metrics") == "/metrics"


def test_prometheus_service_is_pinned_configured_and_internal(stack):
    prometheus = stack["services"]["prometheus"]
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", prometheus["image"])
    flags = command_flags(prometheus)
    assert config_targets(prometheus)["prometheus_config"] == flags["config.file"]
    assert stack["configs"]["prometheus_config"]["file"] == "./prometheus/prometheus.yml"
    assert any(v.endswith(":" + flags["storage.tsdb.path"]) for v in prometheus["volumes"])
    assert not prometheus.get("ports")
    shared = set(names(prometheus["networks"]))
    for peer in ("web", "grafana"):
        assert shared & set(names(stack["services"][peer]["networks"])), f"{peer} cannot reach prometheus"


def test_grafana_reaches_prometheus_by_its_service_name(stack):
    grafana = stack["services"]["grafana"]
    target = config_targets(grafana)["grafana_datasource_prometheus"]
    assert target.startswith("/etc/grafana/provisioning/datasources/")
    datasource = ROOT / stack["configs"]["grafana_datasource_prometheus"]["file"]
    (source,) = yaml.safe_load(datasource.read_text())["datasources"]
    assert source["url"] == "http://prometheus:9090" and "prometheus" in stack["services"]


def test_grafana_provisioning_matches_the_stack(stack):
    grafana = stack["services"]["grafana"]
    targets = config_targets(grafana)
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
    assert source["jsonData"]["sentinelName"] == environment(stack["services"]["web"])["REDIS_SENTINEL_MASTER"]
    assert source["secureJsonData"]["password"] == "$__file{/run/secrets/redis_grafana_password}"
    assert "redis_grafana_password" in names(grafana["secrets"])
    plugins = environment(grafana)["GF_INSTALL_PLUGINS"].split()
    assert plugins[0] == "redis-datasource" and re.fullmatch(r"\d+\.\d+\.\d+", plugins[1])
    assert environment(grafana)["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"

    panels = dashboard["panels"]
    assert panels
    for panel in panels:
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"], panel["title"]
    filters = [target.get("filter", "") for panel in panels for target in panel["targets"]]
    assert any(re.search(r"(^| )kind=reading( |$)", f) for f in filters), "no readings panel"
