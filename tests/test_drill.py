"""The fault drill attached to a running stack: the launcher's stack on free ports, two quick faults.

`scripts.drill` must leave the stack whole (what it killed runs again, from the same command
line, and stack.json names the new PIDs, so ``down`` stops exactly what runs) and put back the
cluster config it changed. The log readers it uses on such a stack are checked on their own.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.faults.event_logs import DeliveryLog
from harness.faults.event_logs import EventTail
from harness.process import ROOT
from harness.process import free_ports
from harness.process import pid_alive
from harness.stack.launcher import record_alive


@pytest.fixture
def stack_env(tmp_path: Path) -> dict[str, str]:
    """A private stack (free ports, own state folder) with a short edge session timeout."""
    ports = [str(p) for p in free_ports(11)]
    return dict(os.environ, AEROGUARD_RUN_DIR=str(tmp_path / "run"),
                ZK_PORTS=",".join(ports[0:3]), ZK_PEER_PORTS=",".join(ports[3:6]),
                ZK_ELECTION_PORTS=",".join(ports[6:9]), REDIS_PORT=ports[9], WEB_PORT=ports[10],
                EDGE_SESSION_TIMEOUT_S="2")


def run(env: dict[str, str], module: str, *args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def services(env: dict[str, str]) -> dict[str, dict]:
    stack = json.loads((Path(env["AEROGUARD_RUN_DIR"]) / "stack.json").read_text())
    return {rec["name"]: rec for rec in stack["services"]}


def processes_under(directory: str) -> list[int]:
    """PIDs whose command line names `directory` (anything of the private stack still running)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and directory in (proc / "cmdline").read_text(errors="replace") \
                    and pid_alive(int(proc.name)):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_drill_on_a_running_stack_restarts_what_it_killed_and_down_stops_it(stack_env, tmp_path):
    try:
        up = run(stack_env, "scripts.stack", "up")
        assert up.returncode == 0, up.stdout + up.stderr
        before = services(stack_env)
        report = tmp_path / "drill.json"
        drill = run(stack_env, "scripts.drill", "--faults", "leader_kill9,zk_follower_down,reconfig",
                    "--warmup", "2", "--quiet-rounds", "2", "--json", str(report))
        assert "| leader kill -9 |" in drill.stdout, drill.stdout + drill.stderr
        rows = {row["fault"]: row for row in json.loads(report.read_text())["rows"]}
        assert [row["invariants"] for row in rows.values()] == ["ok"] * 3, drill.stdout + drill.stderr
        assert all(row["readings_duplicated"] == 0 and row["rounds_missed"] <= 1 for row in rows.values())

        after = services(stack_env)
        assert all(record_alive(rec) for rec in after.values()), after
        changed = sorted(name for name in after if after[name]["pid"] != before[name]["pid"])
        assert len(changed) == 2 and changed[0].startswith("edge-") and changed[1].startswith("zookeeper-"), changed
        edge = after[changed[0]]
        cmdline = Path(f"/proc/{edge['pid']}/cmdline").read_text().split("\0")[:-1]
        assert cmdline == before[changed[0]]["argv"] == edge["argv"]
        assert not any(pid_alive(before[name]["pid"]) for name in changed)

        from kazoo.client import KazooClient

        zk = KazooClient(after["zookeeper-1"]["url"].removeprefix("zk://"))
        zk.start(timeout=30)
        try:
            assert zk.exists("/aeroguard/config") is None  # absent before the drill, absent again
        finally:
            zk.stop()
            zk.close()
    finally:
        down = run(stack_env, "scripts.stack", "down", timeout=90)
    assert down.returncode == 0, down.stdout + down.stderr
    assert processes_under(stack_env["AEROGUARD_RUN_DIR"]) == []


def test_event_tail_skips_history_and_waits_for_whole_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps({"t": 1.0, "kind": "old"}) + "\n")
    tail = EventTail(path, since=0.0)
    with open(path, "a") as log:
        log.write(json.dumps({"t": 2.0, "kind": "trigger"}) + "\n" + '{"t": 3.0, "kind": "rea')
        log.flush()
        assert [e["kind"] for e in tail.events()] == ["trigger"]
        log.write('ding"}\n')
    assert [e["kind"] for e in tail.events()] == ["trigger", "reading"]
    assert [e["kind"] for e in tail.events("reading")] == ["reading"]


class Events:
    def __init__(self, *events: dict) -> None:
        self.list = list(events)

    def events(self) -> list[dict]:
        return list(self.list)


def _delivery(round_: int, code: int, sent_at: float, t: float) -> dict:
    return {"kind": "delivery", "group": "g", "epoch": 7, "round": round_, "code": code, "sent_at": sent_at, "t": t}


def test_delivery_log_counts_each_round_stored_once_from_its_answers():
    docs = [{"kind": "aggregate", "doc": {"group": "g", "epoch": 7, "round": r, "value": 1.0}} for r in (1, 2, 3)]
    node = Events(*docs, _delivery(1, None, 1.0, 1.4), _delivery(1, 201, 1.5, 1.6), _delivery(1, 200, 1.7, 1.8),
                  _delivery(2, 200, 2.5, 2.6), _delivery(3, 409, 3.0, 3.1))
    log = DeliveryLog([node])
    assert [(s.key, s.arrived, s.answered) for s in log.stored] == [("g:7:1", 1.5, 1.6), ("g:7:2", 2.5, 2.6)]
    node.list.append(_delivery(3, 201, 3.5, 3.6))
    assert [s.key for s in log.after(2.0)] == ["g:7:2", "g:7:3"]
