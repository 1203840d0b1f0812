"""The local stack launcher, run as its CLI on free ports with a private state folder."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from harness.process import ROOT
from harness.process import free_ports
from harness.process import pid_alive
from harness.process import wait_until
from harness.stack.services import CommandService
from harness.stack.services import ServiceGroup

ALL_SERVICES = ["zookeeper-1", "zookeeper-2", "zookeeper-3", "redis", "web", "edge-1", "edge-2", "edge-3"]


@pytest.fixture
def stack_env(tmp_path: Path) -> dict[str, str]:
    """Environment for ``python -m scripts.stack`` with free ports and its own state dir."""
    ports = [str(p) for p in free_ports(11)]
    return dict(os.environ, AEROGUARD_RUN_DIR=str(tmp_path / "run"),
                ZK_PORTS=",".join(ports[0:3]), ZK_PEER_PORTS=",".join(ports[3:6]),
                ZK_ELECTION_PORTS=",".join(ports[6:9]), REDIS_PORT=ports[9], WEB_PORT=ports[10])


def stack(env: dict[str, str], *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scripts.stack", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def load(env: dict[str, str]) -> dict:
    return json.loads((Path(env["AEROGUARD_RUN_DIR"]) / "stack.json").read_text())


@pytest.fixture
def stack_down(stack_env):
    """Makes sure whatever a test started is stopped, even when an assertion fails."""
    yield
    stack(stack_env, "down")


def test_up_records_each_service_and_down_stops_exactly_those(stack_env, stack_down):
    up = stack(stack_env, "up")
    assert up.returncode == 0, up.stdout + up.stderr
    services = load(stack_env)["services"]
    assert [s["name"] for s in services] == ALL_SERVICES
    for service in services:
        assert set(service) >= {"name", "pid", "ports", "url"}
        assert pid_alive(service["pid"]), service
    by_name = {s["name"]: s for s in services}
    assert by_name["redis"]["url"] == f"redis://127.0.0.1:{stack_env['REDIS_PORT']}/0"
    assert by_name["web"]["ports"] == {"http": int(stack_env["WEB_PORT"])}
    assert by_name["zookeeper-2"]["ports"]["client"] == int(stack_env["ZK_PORTS"].split(",")[1])
    with urllib.request.urlopen(by_name["web"]["url"] + "/healthz", timeout=5) as response:
        assert response.status == 200
    assert load(stack_env)["env"]["ZK_HOSTS"].count("127.0.0.1:") == 3

    def cluster() -> dict:
        with urllib.request.urlopen(by_name["web"]["url"] + "/api/v1/cluster", timeout=5) as response:
            return json.load(response)["groups"].get("boiler-1", {})

    live = wait_until(lambda: len(cluster().get("live_nodes", [])) == 3 and cluster(), 30, "3 live edge nodes")
    assert {n["pid"] for n in live["live_nodes"]} == {by_name[f"edge-{i}"]["pid"] for i in (1, 2, 3)}

    def stored() -> int:
        url = by_name["web"]["url"] + "/listar?sensor=boiler-1"
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)["count"]

    wait_until(lambda: stored() >= 2, 30, "the edge group's aggregates stored by the web tier")

    again = stack(stack_env, "up")
    assert again.returncode == 0
    assert "already running" in again.stdout
    assert load(stack_env)["services"] == services

    status = stack(stack_env, "status")
    assert status.returncode == 0
    assert status.stdout.count("alive") == len(ALL_SERVICES)

    down = stack(stack_env, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not any(pid_alive(s["pid"]) for s in services)
    assert not (Path(stack_env["AEROGUARD_RUN_DIR"]) / "stack.json").exists()


def test_up_refuses_a_busy_port_and_leaves_nothing_running(stack_env):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", int(stack_env["REDIS_PORT"])))
        busy.listen()
        up = stack(stack_env, "up", "--services", "zookeeper,redis")
    assert up.returncode == 1
    assert f"redis redis port {stack_env['REDIS_PORT']}" in up.stderr
    assert "REDIS_PORT" in up.stderr
    assert not (Path(stack_env["AEROGUARD_RUN_DIR"]) / "stack.json").exists()


def test_down_leaves_a_reused_pid_alone(stack_env):
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        run_dir = Path(stack_env["AEROGUARD_RUN_DIR"])
        run_dir.mkdir()
        fake = {"name": "redis", "pid": bystander.pid, "start_time": 1, "ports": {}, "url": "", "log": ""}
        (run_dir / "stack.json").write_text(json.dumps({"services": [fake], "env": {}}))
        assert stack(stack_env, "down").returncode == 0
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_run_stops_everything_on_sigterm(stack_env):
    run = subprocess.Popen([sys.executable, "-m", "scripts.stack", "run", "--services", "zookeeper,redis"],
                           cwd=ROOT, env=stack_env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        stack_file = Path(stack_env["AEROGUARD_RUN_DIR"]) / "stack.json"
        wait_until(stack_file.exists, 60, "stack.json from `run`")
        pids = [s["pid"] for s in load(stack_env)["services"]]
        assert len(pids) == 4 and all(pid_alive(pid) for pid in pids)
        run.send_signal(signal.SIGTERM)
        output = run.communicate(timeout=60)[0]
        assert run.returncode == 0, output
        assert "127.0.0.1" in output
        assert not any(pid_alive(pid) for pid in pids)
        assert not stack_file.exists()
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


def test_a_service_group_starts_records_and_stops_its_members(tmp_path):
    members = [CommandService(f"edge-{i}", ["sleep", "60"], dict(os.environ), tmp_path / f"edge-{i}.log",
                              {}) for i in (1, 2, 3)]
    group = ServiceGroup("edge", members)
    group.start()
    try:
        group.wait_ready(group.ready_timeout)
        records = group.records()
        assert [r["name"] for r in records] == ["edge-1", "edge-2", "edge-3"]
        assert all(pid_alive(r["pid"]) for r in records)
    finally:
        group.stop()
    assert not any(pid_alive(r["pid"]) for r in records)
