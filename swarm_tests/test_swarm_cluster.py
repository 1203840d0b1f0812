"""The stack's Redis Cluster variant (`make swarm-up REDIS=cluster`, deploy/swarm-cluster.yml).

Skipped unless the deployed stack runs it (its redis-cluster-1 service has a task). Requests go
to HAProxy's published port on 127.0.0.1 over TLS; the cluster is read with `redis-cli` inside
its own containers.
"""
from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from harness import swarm

ROOT = Path(__file__).resolve().parents[1]
README_URL = "http://127.0.0.1:8000"
NODES = tuple(f"redis-cluster-{i}" for i in range(1, 7))
REDIS_CLI = 'REDISCLI_AUTH=$(cat /run/secrets/redis_password) exec /opt/redis-stack/bin/redis-cli "$@"'


@pytest.fixture(scope="module")
def cluster(stack):
    if not stack.containers(NODES[0]):
        pytest.skip("the deployed stack is not the Redis Cluster variant (make swarm-up REDIS=cluster)")
    return stack


def redis_cli(stack, node: str, *args: str) -> str:
    """`redis-cli ARGS` on `node` (a service name), as it prints it."""
    return stack.docker("exec", stack.containers(node)[0], "sh", "-c", REDIS_CLI, "sh", *args).stdout


def cluster_nodes(stack) -> list[dict]:
    """CLUSTER NODES as seen by redis-cluster-1: id, hostname, flags, master id and slots."""
    rows = []
    for line in redis_cli(stack, NODES[0], "CLUSTER", "NODES").splitlines():
        fields = line.split()
        rows.append({"id": fields[0], "hostname": fields[1].partition(",")[2], "flags": fields[2].split(","),
                     "master": fields[3], "link": fields[7], "slots": fields[8:]})
    return rows


def test_the_web_tier_is_pointed_at_the_cluster(cluster):
    env = cluster.docker("service", "inspect", "--format", "{{json .Spec.TaskTemplate.ContainerSpec.Env}}",
                         f"{swarm.STACK}_web").stdout
    assert "REDIS_CLUSTER_NODES=" + ",".join(f"{node}:6379" for node in NODES) in env
    assert "REDIS_WAIT_REPLICAS=1" in env
    for service in ("redis-1", "redis-2", "redis-sentinel-1", "redis-sentinel-2", "redis-sentinel-3"):
        assert not cluster.containers(service), f"{service} still runs beside the cluster"


def test_cluster_info_is_ok_with_three_masters_each_with_a_replica(cluster):
    info = dict(line.split(":", 1) for line in redis_cli(cluster, NODES[0], "CLUSTER", "INFO").split()
                if ":" in line)
    assert info["cluster_state"] == "ok", info
    assert info["cluster_slots_assigned"] == info["cluster_slots_ok"] == "16384", info
    assert info["cluster_known_nodes"] == "6" and info["cluster_size"] == "3", info
    nodes = cluster_nodes(cluster)
    masters = [n for n in nodes if "master" in n["flags"]]
    replicas = [n for n in nodes if "slave" in n["flags"]]
    assert len(masters) == 3 and all(n["slots"] for n in masters), nodes
    assert sorted(r["master"] for r in replicas) == sorted(m["id"] for m in masters), nodes
    assert all(n["link"] == "connected" and "fail" not in n["flags"] for n in nodes), nodes
    # Clients reach each node by its service name (cluster-announce-hostname).
    assert sorted(n["hostname"] for n in nodes) == sorted(NODES), nodes
    for node in NODES:
        assert "timeseries" in redis_cli(cluster, node, "MODULE", "LIST"), node
        assert redis_cli(cluster, node, "CONFIG", "GET", "min-replicas-to-write").split()[1] == "1", node
        assert redis_cli(cluster, node, "CONFIG", "GET", "appendonly").split()[1] == "yes", node
    print(f"\n    masters: {sorted(m['hostname'] for m in masters)}; "
          f"replicas: {sorted(r['hostname'] for r in replicas)}")


def test_readme_curl_flow_works_against_the_cluster(cluster):
    """README's /nuevo, /detectar and /listar examples, with https, the stack's certificate and the key."""
    text = (ROOT / "README.md").read_text()
    curls = [line for line in text.splitlines() if line.startswith("curl ") and README_URL in line
             and re.search(r"/(nuevo|detectar|listar)\?", line)]
    assert {re.search(r"/(\w+)\?", c).group(1) for c in curls} == {"nuevo", "detectar", "listar"}, curls
    for line in curls:
        command = line.replace(README_URL, swarm.WEB_URL).replace(
            "curl ", f"curl --fail-with-body -sS --cacert {cluster.cert} -H 'X-API-Key: {cluster.api_key}' ", 1)
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and done.stdout.strip(), f"{line}\n{done.stdout}\n{done.stderr}"
    listed = cluster.get("/listar?sensor=lab-1&count=5").json()["readings"]
    assert {21.5, 21.7, 240.0} <= {r["value"] for r in listed}, listed


def test_readings_land_on_more_than_one_master(cluster):
    run = f"cl{int(time.time())}"
    sensors = [f"{run}-{i}" for i in range(12)]
    for i, sensor in enumerate(sensors):
        response = cluster.get(f"/nuevo?dato={20 + i}&sensor={sensor}", key=True)
        assert response.status_code in (200, 201), response.text
    for sensor in sensors:
        readings = cluster.get(f"/listar?sensor={sensor}&count=5").json()["readings"]
        assert len(readings) == 1, (sensor, readings)
    masters = [n["hostname"] for n in cluster_nodes(cluster) if "master" in n["flags"]]
    found = {}
    for master in masters:
        keys = redis_cli(cluster, master, "--scan", "--pattern", f"*:s:{run}-*").split()
        found[master] = {re.search(rf":s:({run}-\d+)", k).group(1) for k in keys}
    print(f"\n    {len(sensors)} sensors' keys by master: { {m: len(s) for m, s in found.items()} }")
    assert set().union(*found.values()) == set(sensors), found
    assert sum(1 for held in found.values() if held) >= 2, found
