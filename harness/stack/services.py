"""The services of the local stack, and `SERVICES`: the stack in start order.

Each service is one entry of `SERVICES`: a builder taking the `StackConfig` and the
environment exported by the services before it (``ZK_HOSTS``, ``REDIS_URL``, ...) and
returning an object with ``start``/``wait_ready``/``stop``/``records``/``exports``. A record
(`record`) is one ``stack.json`` entry: name, pid, ports, URL, log, and the command line of the
processes `harness.stack.launcher.restart` can start again.
"""
from __future__ import annotations

import dataclasses
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable
from typing import Mapping
from typing import Protocol
from typing import Sequence

from harness.process import LOOPBACK
from harness.process import ROOT
from harness.process import ServerError
from harness.process import ServerProcess
from harness.process import process_start_time
from harness.process import wait_until
from harness.redis_cluster import BUS_OFFSET
from harness.redis_cluster import RedisCluster
from harness.redis_server import RedisOptions
from harness.redis_server import RedisServer
from harness.redis_topology import BOUNDED
from harness.redis_topology import RedisSentinelSet
from harness.redis_topology import TopologyPorts
from harness.stack.config import StackConfig
from harness.zookeeper import ZooKeeperEnsemble


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


class RedisClusterService:
    """A Redis Cluster of 3 masters and 3 replicas (TimeSeries, AOF) on ``CLUSTER_PORTS`` (their
    bus ports +10000); the web tier uses the cluster client and waits for 1 replica per write."""

    name = "redis"
    ready_timeout = 60.0

    def __init__(self, config: StackConfig, env: Mapping[str, str]) -> None:
        self.cluster = RedisCluster(config.state_dir / "redis-cluster", config.cluster_ports)

    def start(self) -> None:
        self.cluster.start(self.ready_timeout)

    def wait_ready(self, timeout: float) -> None:
        self.cluster.wait_ready(timeout)

    def stop(self) -> None:
        self.cluster.stop()

    def records(self) -> list[dict]:
        return [record(name, pid, {"redis": port, "bus": port + BUS_OFFSET}, f"redis://{LOOPBACK}:{port}", log)
                for name, pid, port, log in self.cluster.processes()]

    def exports(self) -> dict[str, str]:
        return {"REDIS_CLUSTER_NODES": self.cluster.startup_nodes, "REDIS_WAIT_REPLICAS": "1"}


def redis_service(config: StackConfig, env: Mapping[str, str]) -> Service:
    """One redis-server, the Sentinel topology with ``REDIS=sentinel``, or a Redis Cluster with
    ``REDIS=cluster``."""
    if config.redis == "sentinel":
        return RedisSentinelService(config, env)
    if config.redis == "cluster":
        return RedisClusterService(config, env)
    if config.redis != "single":
        raise ServerError(f"REDIS must be single, sentinel or cluster, not {config.redis!r}")
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
