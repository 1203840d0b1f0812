"""The local stack launcher: ``python -m scripts.stack run|up|status|down``.

Starts, in order, a 3-node ZooKeeper ensemble (tickTime 500 ms), one redis-server with
RedisTimeSeries (or, with ``REDIS=sentinel``, a master, a replica and 3 Sentinels:
`scripts.redis_topology`) and the web tier under gunicorn, all on 127.0.0.1, with state (data, logs,
``stack.json``) under ``.run/``. Each service is one entry of `SERVICES`: a builder taking the
`StackConfig` and the environment exported by the services before it (``ZK_HOSTS``,
``REDIS_URL``, ...) and returning an object with ``start``/``wait_ready``/``stop``/``records``/
``exports``. ``up`` records every process (name, pid, ports, URL, and the command line of the
ones `restart` can start again) in ``stack.json``; ``down`` stops exactly those PIDs; ``run`` is
``up`` in the foreground until Ctrl-C or SIGTERM. The fault drill (`scripts.drill`) kills and
`restart`s recorded processes, and keeps ``stack.json`` current.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Mapping, Protocol, Sequence

from scripts.redis_topology import BOUNDED
from scripts.redis_topology import RedisSentinelSet
from scripts.redis_topology import TopologyPorts
from scripts.servers import LOOPBACK
from scripts.servers import ROOT
from scripts.servers import RedisOptions
from scripts.servers import RedisServer
from scripts.servers import ServerError
from scripts.servers import ServerProcess
from scripts.servers import ZooKeeperEnsemble
from scripts.servers import pid_alive
from scripts.servers import process_start_time
from scripts.servers import stop_pid
from scripts.servers import wait_until


@dataclasses.dataclass(frozen=True)
class StackConfig:
    """Where the stack keeps its state and which loopback ports it uses."""

    state_dir: Path
    zk_ports: tuple[int, ...] = (2181, 2182, 2183)
    zk_peer_ports: tuple[int, ...] = (2888, 2889, 2890)
    zk_election_ports: tuple[int, ...] = (3888, 3889, 3890)
    redis_port: int = 6379
    redis: str = "single"
    redis_replica_port: int = 6380
    sentinel_ports: tuple[int, ...] = (26379, 26380, 26381)
    web_port: int = 8000
    web_workers: int = 2
    web_app: str = "webapp:create_app()"
    edge_nodes: int = 3
    edge_group: str = "boiler-1"
    edge_period_s: float = 1.0
    scenario: str = ""
    services: tuple[str, ...] = ("zookeeper", "redis", "web", "edge")

    @classmethod
    def from_env(cls, env: Mapping[str, str], state_dir: Path | None = None) -> StackConfig:
        """Read ``AEROGUARD_RUN_DIR``, ``ZK_PORTS``, ``ZK_PEER_PORTS``, ``ZK_ELECTION_PORTS``,
        ``REDIS_PORT``, ``REDIS`` (``single`` or ``sentinel``), ``REDIS_REPLICA_PORT``,
        ``SENTINEL_PORTS``, ``WEB_PORT``, ``WEB_WORKERS``, ``WEB_APP``, ``EDGE_NODES``,
        ``EDGE_GROUP``, ``EDGE_PERIOD_S``, ``SCENARIO`` (``fault``), ``STACK_SERVICES``.

        >>> config = StackConfig.from_env({"WEB_PORT": "9000", "ZK_PORTS": "1,2,3"}, Path("/x"))
        >>> config.web_port, config.zk_ports, config.redis_port, str(config.stack_file)
        (9000, (1, 2, 3), 6379, '/x/stack.json')
        """
        d = cls(state_dir=Path("."))

        def ports(name: str, default: tuple[int, ...]) -> tuple[int, ...]:
            return tuple(int(p) for p in env[name].split(",")) if env.get(name) else default

        return cls(
            state_dir=Path(state_dir or env.get("AEROGUARD_RUN_DIR") or ROOT / ".run").resolve(),
            zk_ports=ports("ZK_PORTS", d.zk_ports),
            zk_peer_ports=ports("ZK_PEER_PORTS", d.zk_peer_ports),
            zk_election_ports=ports("ZK_ELECTION_PORTS", d.zk_election_ports),
            redis_port=int(env.get("REDIS_PORT") or d.redis_port),
            redis=env.get("REDIS") or d.redis,
            redis_replica_port=int(env.get("REDIS_REPLICA_PORT") or d.redis_replica_port),
            sentinel_ports=ports("SENTINEL_PORTS", d.sentinel_ports),
            web_port=int(env.get("WEB_PORT") or d.web_port),
            web_workers=int(env.get("WEB_WORKERS") or d.web_workers),
            web_app=env.get("WEB_APP") or d.web_app,
            edge_nodes=int(env.get("EDGE_NODES") or d.edge_nodes),
            edge_group=env.get("EDGE_GROUP") or d.edge_group,
            edge_period_s=float(env.get("EDGE_PERIOD_S") or d.edge_period_s),
            scenario=env.get("SCENARIO") or d.scenario,
            services=tuple(env["STACK_SERVICES"].split(",")) if env.get("STACK_SERVICES") else d.services,
        )

    @property
    def stack_file(self) -> Path:
        return self.state_dir / "stack.json"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"


class Service(Protocol):
    """What the launcher needs from a service (one or several processes)."""

    name: str
    ready_timeout: float

    def start(self) -> None: ...
    def wait_ready(self, timeout: float) -> None: ...
    def stop(self) -> None: ...
    def records(self) -> list[dict]: ...
    def exports(self) -> dict[str, str]: ...


def record(name: str, pid: int | None, ports: dict[str, int], url: str, log: Path,
           command: Mapping | None = None) -> dict:
    """One stack.json entry; ``start_time`` lets ``down`` tell our PID from a reused one.

    `command` (``argv``, ``cwd``, ``extra_env``: the variables the launcher set for this
    process only, never secrets) lets `restart` start the same command again; the rest of
    the environment is rebuilt as `build_services` builds it, so stack.json holds no secrets.
    """
    return {"name": name, "pid": pid, "start_time": process_start_time(pid) if pid else None,
            "ports": ports, "url": url, "log": str(log), **(command or {})}


ZK_TICK_MS = 500


class ZooKeeperService:
    """The ZooKeeper ensemble; one stack.json entry per node (``zookeeper-1``...)."""

    name = "zookeeper"
    ready_timeout = 60.0

    def __init__(self, config: StackConfig, env: Mapping[str, str]) -> None:
        quorum = list(zip(config.zk_peer_ports, config.zk_election_ports))
        self.ensemble = ZooKeeperEnsemble(config.state_dir / "zookeeper", config.zk_ports,
                                          tick_ms=ZK_TICK_MS, quorum_ports=quorum)

    def start(self) -> None:
        self.ensemble.start()

    def wait_ready(self, timeout: float) -> None:
        self.ensemble.wait_ready(timeout)

    def stop(self) -> None:
        self.ensemble.stop()

    def records(self) -> list[dict]:
        return [record(f"zookeeper-{i + 1}", pid, dataclasses.asdict(ports),
                       f"zk://{LOOPBACK}:{ports.client}", self.ensemble.log_path(i))
                for i, (pid, ports) in enumerate(zip(self.ensemble.pids, self.ensemble.ports))]

    def exports(self) -> dict[str, str]:
        return {"ZK_HOSTS": self.ensemble.hosts}


class RedisService:
    """One redis-server with RedisTimeSeries (no persistence: a local, disposable store)."""

    name = "redis"
    ready_timeout = 30.0

    def __init__(self, config: StackConfig, env: Mapping[str, str]) -> None:
        self.server = RedisServer(config.state_dir / "redis", config.redis_port, RedisOptions(extra_args=BOUNDED))

    def start(self) -> None:
        self.server.start()

    def wait_ready(self, timeout: float) -> None:
        self.server.wait_ready(timeout)

    def stop(self) -> None:
        self.server.stop()

    def records(self) -> list[dict]:
        return [record("redis", self.server.pid, {"redis": self.server.port}, self.server.url,
                       self.server.log_path)]

    def exports(self) -> dict[str, str]:
        return {"REDIS_URL": self.server.url, "REDIS_HOST": LOOPBACK,
                "REDIS_PORT": str(self.server.port)}


class RedisSentinelService:
    """Master + replica (TimeSeries, AOF) and 3 Sentinels; the web tier waits for 1 replica."""

    name = "redis"
    ready_timeout = 60.0

    def __init__(self, config: StackConfig, env: Mapping[str, str]) -> None:
        ports = TopologyPorts((config.redis_port, config.redis_replica_port), config.sentinel_ports)
        self.topology = RedisSentinelSet(config.state_dir / "redis-sentinel", ports)

    def start(self) -> None:
        self.topology.start(self.ready_timeout)

    def wait_ready(self, timeout: float) -> None:
        self.topology.wait_ready(timeout)

    def stop(self) -> None:
        self.topology.stop()

    def records(self) -> list[dict]:
        scheme = {"redis": "redis", "sentinel": "sentinel"}
        return [record(name, pid, {name.split("-")[0]: port}, f"{scheme[name.split('-')[0]]}://{LOOPBACK}:{port}",
                       log) for name, pid, port, log in self.topology.processes()]

    def exports(self) -> dict[str, str]:
        return {"REDIS_SENTINELS": self.topology.sentinels_spec,
                "REDIS_SENTINEL_MASTER": self.topology.options.master_name,
                "REDIS_WAIT_REPLICAS": "1"}


def redis_service(config: StackConfig, env: Mapping[str, str]) -> Service:
    """One redis-server, or the Sentinel topology with ``REDIS=sentinel``."""
    if config.redis == "sentinel":
        return RedisSentinelService(config, env)
    if config.redis != "single":
        raise ServerError(f"REDIS must be single or sentinel, not {config.redis!r}")
    return RedisService(config, env)


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when GET ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


class CommandService:
    """A generic service: one command, optionally ready when ``health_url`` answers 200.

    Edge nodes and the inference stand-in join the stack as instances of this class.
    """

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log: Path,
                 ports: dict[str, int], url: str = "", health_url: str = "",
                 ready_timeout: float = 60.0, extra_env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.extra_env = dict(extra_env or {})  # recorded in stack.json: never put a secret here
        self.process = ServerProcess(name, argv, log, env={**env, **self.extra_env}, cwd=ROOT)
        self.ports, self.url, self.health_url = ports, url, health_url
        self.ready_timeout = ready_timeout
        self.exported: dict[str, str] = {}  # environment later services get from this one

    def start(self) -> None:
        self.process.start()

    def wait_ready(self, timeout: float) -> None:
        def ready() -> bool:
            self.process.check_running()
            return http_ok(self.health_url) if self.health_url else True
        wait_until(ready, timeout, f"{self.process.name} ({self.health_url or 'process'}) to be ready",
                   interval=0.2)

    def stop(self) -> None:
        self.process.stop()

    def records(self) -> list[dict]:
        command = {"argv": self.process.argv, "cwd": str(ROOT), "extra_env": self.extra_env}
        return [record(self.process.name, self.process.pid, self.ports, self.url, self.process.log_path, command)]

    def exports(self) -> dict[str, str]:
        return dict(self.exported)


class ServiceGroup:
    """Several services started as one (e.g. ``edge-1..3``): ready when every member is."""

    def __init__(self, name: str, members: Sequence[Service]) -> None:
        self.name = name
        self.members = list(members)
        self.ready_timeout = max((m.ready_timeout for m in self.members), default=0.0)

    def start(self) -> None:
        for member in self.members:
            member.start()

    def wait_ready(self, timeout: float) -> None:
        for member in self.members:
            member.wait_ready(timeout)

    def stop(self) -> None:
        for member in reversed(self.members):
            member.stop()

    def records(self) -> list[dict]:
        return [rec for member in self.members for rec in member.records()]

    def exports(self) -> dict[str, str]:
        return {key: value for member in self.members for key, value in member.exports().items()}


def web_service(config: StackConfig, env: Mapping[str, str]) -> CommandService:
    """gunicorn serving ``webapp:create_app()`` on 127.0.0.1:WEB_PORT with >= 2 workers."""
    bind = f"{LOOPBACK}:{config.web_port}"
    url = f"http://{bind}"
    argv = [sys.executable, "-m", "gunicorn"]
    conf = ROOT / "webapp" / "gunicorn_conf.py"
    if conf.exists():
        argv += ["-c", str(conf)]
    argv += ["--bind", bind, "--workers", str(config.web_workers), config.web_app]
    extra = {"GUNICORN_BIND": bind, "WEB_CONCURRENCY": str(config.web_workers),
             "PROMETHEUS_MULTIPROC_DIR": str(config.state_dir / "prometheus-web")}
    service = CommandService("web", argv, env, config.log_dir / "web.log",
                             {"http": config.web_port}, url, f"{url}/healthz", ready_timeout=120.0,
                             extra_env=extra)
    service.exported = {"WEB_URL": url, "API_URLS": url}
    return service


# SCENARIO=fault: a minute after start every node sees a real 60 °C excursion of the process
# for 15 s (a critical anomaly the detectors should agree on), and the last node's sensor
# turns noisy (a sensor fault the leader's fusion excludes and reports).
FAULT_SCENARIO = {"all": "spike:60:15:60", "last": "noise:90:120:25"}


def edge_service(config: StackConfig, env: Mapping[str, str]) -> ServiceGroup:
    """``EDGE_NODES`` edge nodes of one group, simulated sensors, delivering to the web tier."""
    members = []
    for n in range(1, config.edge_nodes + 1):
        faults = []
        if config.scenario == "fault":
            faults.append(FAULT_SCENARIO["all"])
            if n == config.edge_nodes:
                faults.append(FAULT_SCENARIO["last"])
        elif config.scenario:
            raise ServerError(f"SCENARIO must be fault or empty, not {config.scenario!r}")
        source = "sim:" + ("faults=" + "|".join(faults) if faults else "")
        home = config.state_dir / f"edge-{n}"
        home.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "edge", "--group", config.edge_group, "--node-id", f"n{n}",
                "--zk", env["ZK_HOSTS"], "--source", source, "--period", str(config.edge_period_s),
                "--api-urls", env["API_URLS"], "--spool-dir", str(home / "spool"),
                "--event-log", str(home / "events.jsonl")]
        members.append(CommandService(f"edge-{n}", argv, env, config.log_dir / f"edge-{n}.log", {}, "",
                                      ready_timeout=30.0))
    return ServiceGroup("edge", members)


# The stack, in start order. A builder gets the config and the environment exported by the
# services before it, and returns a `Service` whose records() already name its ports (they
# are checked free before anything starts). Add a service by appending (name, builder).
SERVICES: list[tuple[str, Callable[[StackConfig, Mapping[str, str]], Service]]] = [
    ("zookeeper", ZooKeeperService),
    ("redis", redis_service),
    ("web", web_service),
    ("edge", edge_service),
]


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
                          "SENTINEL_PORTS, WEB_PORT)")
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


def print_stack(stack: dict) -> None:
    for rec in stack["services"]:
        state = "alive" if record_alive(rec) else "DEAD"
        print(f"  {rec['name']:<12} {state:<6} pid {rec['pid']:<8} {rec['url']:<28} log {rec['log']}")


def already_running(config: StackConfig) -> bool:
    """True (and says so) when a recorded stack still runs; removes a stack.json of dead PIDs."""
    stack = load_stack(config)
    if stack is None:
        return False
    if not any(record_alive(rec) for rec in stack["services"]):
        config.stack_file.unlink()
        return False
    print(f"stack already running (from {config.stack_file}); not starting duplicates:")
    print_stack(stack)
    return True


def cmd_up(config: StackConfig) -> int:
    if already_running(config):
        return 0
    config.log_dir.mkdir(parents=True, exist_ok=True)
    services, exports = start_services(config)
    stack = write_stack(config, services, exports)
    print(f"stack is up (state in {config.state_dir}):")
    print_stack(stack)
    return 0


def cmd_run(config: StackConfig) -> int:
    if already_running(config):
        print("stop it first with `make down`")
        return 1
    config.log_dir.mkdir(parents=True, exist_ok=True)
    services, exports = start_services(config)
    # From here on a signal only asks the loop below to stop, so shutdown is not interrupted.
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    code = 0
    try:
        stack = write_stack(config, services, exports)
        print("stack is running; Ctrl-C to stop:")
        print_stack(stack)
        while not stop.wait(0.5):
            dead = [rec["name"] for rec in stack["services"] if not record_alive(rec)]
            if dead:
                print(f"service(s) died: {', '.join(dead)} (see their logs); stopping", file=sys.stderr)
                code = 1
                break
    finally:
        print("==> stopping the stack", flush=True)
        stop_services(services)
        config.stack_file.unlink(missing_ok=True)
    return code


def cmd_status(config: StackConfig) -> int:
    stack = load_stack(config)
    if stack is None:
        print(f"stack not running (no {config.stack_file})")
        return 0
    print(f"stack started from {config.stack_file}:")
    print_stack(stack)
    return 0 if all(record_alive(rec) for rec in stack["services"]) else 1


def cmd_down(config: StackConfig) -> int:
    stack = load_stack(config)
    if stack is None:
        print(f"stack not running (no {config.stack_file})")
        return 0
    for rec in reversed(stack["services"]):
        if record_alive(rec):
            print(f"==> stopping {rec['name']} (pid {rec['pid']})", flush=True)
            stop_pid(rec["pid"])
        else:
            print(f"    {rec['name']} (pid {rec['pid']}) is not running")
    config.stack_file.unlink()
    print("stack is down")
    return 0


COMMANDS = {"run": cmd_run, "up": cmd_up, "status": cmd_status, "down": cmd_down}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.stack", description=__doc__)
    parser.add_argument("command", choices=list(COMMANDS))
    parser.add_argument("--state-dir", type=Path, help="state folder (default .run, or AEROGUARD_RUN_DIR)")
    parser.add_argument("--services", help="comma-separated subset to start (default: all)")
    args = parser.parse_args(argv)
    # SIGTERM while starting behaves like Ctrl-C: what was started is stopped, not orphaned.
    # SIGINT too, even when our parent ignored it (a shell's background job).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    config = StackConfig.from_env(os.environ, args.state_dir)
    if args.services:
        config = dataclasses.replace(config, services=tuple(args.services.split(",")))
    try:
        return COMMANDS[args.command](config)
    except ServerError as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stack: interrupted; what had started was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
