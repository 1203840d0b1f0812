"""The deployed stack (`make swarm-up`) does what docker-stack.yml promises, on a real Swarm.

Run by `make swarm-test`; every request goes to HAProxy's published port on 127.0.0.1 over
TLS, checked against the stack's own self-signed certificate.
"""
from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from harness import swarm

ROOT = Path(__file__).resolve().parents[1]
README_URL = "http://127.0.0.1:8000"
# README's examples that store something need the ingest key on a deployed stack (the local
# demo runs ingest open; Settings.check_secrets refuses that in production).
NEEDS_KEY = ("/nuevo", "/detectar", "/api/v1/readings")
# README's hand-made aggregate names the group `demo`, whose epoch no leader in ZooKeeper
# vouches for: a deployed stack refuses it (403), as it must refuse any forged aggregate.
REFUSED = {"/api/v1/readings": (403, "group demo has no leader in ZooKeeper")}


def test_five_distinct_web_replicas_answer_behind_the_one_published_port(stack):
    containers = stack.containers("web")
    assert len(containers) == 5
    hostnames = {stack.inspect(c)["Config"]["Hostname"] for c in containers}
    served_by = set()
    for _ in range(60):
        response = stack.get("/healthz")
        assert response.status_code == 200
        served_by.add(response.headers["X-Served-By"])
        if served_by == hostnames:
            break
    print(f"\n    {len(served_by)} web replicas answered behind {swarm.WEB_URL}: {sorted(served_by)}")
    assert served_by == hostnames
    # The only published port is HAProxy's TLS one, on loopback.
    assert stack.get("/healthz").headers["Strict-Transport-Security"]
    published = stack.docker("ps", "--format", "{{.Ports}}").stdout.split()
    assert published and all(p.startswith("127.0.0.1:") for p in published if "->" in p), published


def readme_curls() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    return [line for block in blocks for line in block.splitlines()
            if line.startswith("curl ") and README_URL in line]


def test_readme_curl_examples_work_against_the_swarm(stack):
    """Each README example, with https, the stack's certificate and (where it stores) the key."""
    curls = readme_curls()
    assert len(curls) >= 8
    for line in curls:
        command = line.replace(README_URL, swarm.WEB_URL).replace(
            "curl ", f"curl --fail-with-body -sS --cacert {stack.cert} ", 1)
        if any(path in line for path in NEEDS_KEY):
            unkeyed = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30)
            assert unkeyed.returncode != 0 and "401" in unkeyed.stderr + unkeyed.stdout, line
            command = command.replace("curl ", f"curl -H 'X-API-Key: {stack.api_key}' ", 1)
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30)
        refused = next((r for path, r in REFUSED.items() if path in line), None)
        if refused:
            assert f"error: {refused[0]}" in done.stderr and refused[1] in done.stdout, f"{line}\n{done.stdout}"
            continue
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
        assert done.stdout.strip(), line


def test_the_edge_groups_fused_rounds_are_stored_and_judged(stack):
    def newest() -> list[dict]:
        response = stack.get("/listar?sensor=boiler-1&count=100")
        assert response.status_code == 200
        return response.json()["readings"]

    before = newest()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(2)
        after = newest()
        if after and (not before or after[-1]["timestamp"] > before[-1]["timestamp"]):
            break
    assert after and (not before or after[-1]["timestamp"] > before[-1]["timestamp"]), "no new fused round"
    # One reading per round: no timestamp twice.
    stamps = [r["timestamp"] for r in after]
    assert len(stamps) == len(set(stamps))
    cluster = stack.get("/api/v1/cluster").json()
    print(f"\n    boiler-1: {len(after)} fused rounds listed; cluster: {str(cluster)[:300]}")
    # Judged: the decision log has verdicts for the group's rounds.
    decisions = stack.get("/api/v1/decisions?sensor=boiler-1&count=5")
    if decisions.status_code == 404:
        decisions = stack.get("/api/v1/anomalies?count=5")
    assert decisions.status_code == 200, decisions.text
    assert stack.get("/api/v1/anomalies?count=3").status_code == 200


def test_detectar_answers_with_the_full_panel_over_grpc(stack):
    """Once a sensor has enough history every detector votes: the learned ones over gRPC."""
    for n in range(80):
        response = stack.get(f"/detectar?dato={21.5 + 0.1 * (n % 3)}&sensor=swarm-panel", key=True)
        assert response.status_code == 201, response.text
        body = response.json()
        if not body["degraded"]:
            break
    print(f"\n    /detectar after {n + 1} readings: {body}")
    assert body["degraded"] == [], body
    assert all(vote["vote"] is not None for vote in body["votes"].values()), body["votes"]
    assert {"autoencoder", "lstm"} <= body["votes"].keys()


def test_secrets_arrive_as_files_not_environment_variables(stack):
    container = stack.containers("web")[0]
    listed = stack.docker("exec", container, "ls", "/run/secrets").stdout.split()
    assert set(listed) == {"redis_password", "api_keys", "admin_keys", "zk_auth"}
    environ = stack.docker("exec", container, "cat", "/proc/1/environ").stdout
    values = [path.read_text().strip() for path in swarm.SECRETS_DIR.glob("aeroguard_*")
              if not path.name.startswith("aeroguard_tls")]
    assert values
    for value in values:
        for part in [value, *value.splitlines(), value.partition(":")[2]]:
            assert not part or part not in environ
    assert "API_KEYS_FILE=/run/secrets/api_keys" in environ


def test_the_web_image_has_no_tensorflow_and_its_size_is_printed(stack):
    image = stack.service_image("web")
    size = int(stack.docker("image", "inspect", "--format", "{{.Size}}", image).stdout)
    probe = stack.docker("run", "--rm", "--network", "none", "--entrypoint", "python", image, "-c",
                         "import importlib.util as u; "
                         "print(u.find_spec('tensorflow'), u.find_spec('flask') is not None)")
    print(f"\n    web image {image}: {size / 1e6:.0f} MB; find_spec(tensorflow), flask: {probe.stdout.strip()}")
    assert probe.stdout.split() == ["None", "True"]
    assert size < 600e6



def test_prometheus_has_every_web_replica_up(stack):
    """The stack's real Prometheus finds the five web tasks through tasks.web and scrapes them."""
    import json

    container = stack.containers("prometheus")[0]
    web_ips = {stack.inspect(c)["NetworkSettings"]["Networks"][f"{swarm.STACK}_monitoring"]["IPAddress"]
               for c in stack.containers("web")}
    deadline = time.monotonic() + 90
    while True:
        raw = stack.docker("exec", container, "wget", "-q", "-O", "-", "http://127.0.0.1:9090/api/v1/targets").stdout
        targets = [t for t in json.loads(raw)["data"]["activeTargets"] if t["labels"]["job"] == "web"]
        up = {t["labels"]["instance"].rsplit(":", 1)[0] for t in targets if t["health"] == "up"}
        if up == web_ips or time.monotonic() > deadline:
            break
        time.sleep(3)
    print(f"\n    Prometheus web targets up: {sorted(up)}")
    assert up == web_ips
    assert len(up) == 5
