"""Starting and stopping the local stack's services, and ``stack.json``.

`start_services` starts the selected services in order, each ready before the next, and stops
them all on failure; `write_stack` records every process (name, pid, start time, ports, URL,
log, command line) in ``stack.json``, which ``down`` reads to stop exactly those PIDs.
`restart` starts one recorded process again with the same command line (the fault drill kills
and restarts them) and keeps ``stack.json`` current.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Sequence

from harness.process import LOOPBACK
from harness.process import ServerError
from harness.process import ServerProcess
from harness.process import pid_alive
from harness.process import process_start_time
from harness.stack.config import StackConfig
from harness.stack.services import SERVICES
from harness.stack.services import ZK_TICK_MS
from harness.stack.services import Service
from harness.zookeeper import ZooKeeperEnsemble


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return True
    return False


def record_alive(rec: dict) -> bool:
    """True when the recorded PID runs and is the very process we started (not a reuse)."""
    pid = rec.get("pid")
    return bool(pid) and pid_alive(pid) and process_start_time(pid) == rec.get("start_time")


def load_stack(config: StackConfig) -> dict | None:
    try:
        return json.loads(config.stack_file.read_text())
    except FileNotFoundError:
        return None


def base_env() -> dict[str, str]:
    """The environment every service starts from, before the exports of the ones before it."""
    return dict(os.environ, AEROGUARD_ENV="local")


def build_services(config: StackConfig) -> tuple[list[Service], dict[str, str]]:
    """Build the selected services in order, each with the environment exported before it."""
    unknown = set(config.services) - {name for name, _ in SERVICES}
    if unknown:
        raise ServerError(f"unknown service(s) {sorted(unknown)}; known: {[n for n, _ in SERVICES]}")
    env = base_env()
    exports: dict[str, str] = {}
    services = []
    for name, build in SERVICES:
        if name in config.services:
            services.append(build(config, dict(env)))
            exports.update(services[-1].exports())
            env.update(services[-1].exports())
    return services, exports


def start_services(config: StackConfig) -> tuple[list[Service], dict[str, str]]:
    """Start the selected services in order, each ready before the next; stop all on failure."""
    services, exports = build_services(config)
    busy = [f"{rec['name']} {kind} port {port}" for service in services for rec in service.records()
            for kind, port in rec["ports"].items() if port_in_use(port)]
    if busy:
        raise ServerError(f"already in use on {LOOPBACK}: {', '.join(busy)} (choose other ports: "
                          "ZK_PORTS, ZK_PEER_PORTS, ZK_ELECTION_PORTS, REDIS_PORT, REDIS_REPLICA_PORT, "
                          "SENTINEL_PORTS, CLUSTER_PORTS, WEB_PORT)")
    started: list[Service] = []
    try:
        for service in services:
            print(f"==> starting {service.name}", flush=True)
            started.append(service)
            service.start()
            service.wait_ready(service.ready_timeout)
    except BaseException:
        stop_services(started)
        raise
    return services, exports


def stop_services(services: Sequence[Service]) -> None:
    for service in reversed(services):
        service.stop()


def write_stack(config: StackConfig, services: Sequence[Service], exports: dict[str, str]) -> dict:
    stack = {"state_dir": str(config.state_dir), "started_at": time.time(), "env": exports,
             "services": [rec for service in services for rec in service.records()]}
    save_stack(config, stack)
    return stack


def save_stack(config: StackConfig, stack: dict) -> None:
    """Write stack.json atomically (a reader never sees half a file)."""
    tmp = config.stack_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(stack, indent=2) + "\n")
    tmp.replace(config.stack_file)


def zookeeper_ensemble(stack: dict) -> ZooKeeperEnsemble:
    """The launcher's ensemble rebuilt from stack.json: same folder, ports and tickTime.

    Its ``start_node(i)`` starts node ``i`` on the configuration the launcher wrote.
    """
    nodes = sorted((rec for rec in stack["services"] if rec["name"].startswith("zookeeper-")),
                   key=lambda rec: int(rec["name"].rsplit("-", 1)[1]))
    ports = [rec["ports"] for rec in nodes]
    return ZooKeeperEnsemble(Path(stack["state_dir"]) / "zookeeper", [p["client"] for p in ports],
                             tick_ms=ZK_TICK_MS, quorum_ports=[(p["peer"], p["election"]) for p in ports])


# What `restart` started, by name: holding the Popen keeps it from being collected while the
# child runs (a ResourceWarning) and lets this process reap it after a later kill.
_RESTARTED: dict[str, object] = {}


def restart(config: StackConfig, name: str) -> dict:
    """Start the recorded service `name` again, as ``up`` started it; return its new record.

    Same command line, working folder and log; the environment is rebuilt as `build_services`
    builds it (this process's environment, ``AEROGUARD_ENV=local``, the stack's exports, the
    service's recorded ``extra_env``). ZooKeeper nodes start from their zoo.cfg. stack.json
    gets the new pid and start time, so ``down`` stops exactly what runs. Does not wait for
    readiness.

    Raises
    ------
    ServerError
        When no stack runs, `name` is not recorded or still runs, or it has no command line.
    """
    stack = load_stack(config)
    rec = next((r for r in (stack or {}).get("services", []) if r["name"] == name), None)
    if rec is None:
        raise ServerError(f"{name} is not recorded in {config.stack_file}")
    if record_alive(rec):
        raise ServerError(f"{name} still runs (pid {rec['pid']})")
    if name.startswith("zookeeper-"):
        ensemble = zookeeper_ensemble(stack)
        index = int(name.rsplit("-", 1)[1]) - 1
        ensemble.start_node(index)
        pid = ensemble.node_pid(index)
        _RESTARTED[name] = ensemble
    elif rec.get("argv"):
        env = {**base_env(), **stack["env"], **rec.get("extra_env", {})}
        process = ServerProcess(name, rec["argv"], Path(rec["log"]), env=env, cwd=Path(rec["cwd"]))
        process.start()
        pid = process.pid
        _RESTARTED[name] = process
    else:
        raise ServerError(f"{name} has no recorded command line; restart the stack instead")
    new = {**rec, "pid": pid, "start_time": process_start_time(pid)}
    stack = load_stack(config) or stack  # re-read: keep what changed meanwhile
    stack["services"] = [new if r["name"] == name else r for r in stack["services"]]
    save_stack(config, stack)
    return new
