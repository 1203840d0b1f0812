"""`StackConfig`: where the local stack keeps its state and which loopback ports it uses."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping

from harness.process import ROOT


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
    cluster_ports: tuple[int, ...] = (7000, 7001, 7002, 7003, 7004, 7005)
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
        ``REDIS_PORT``, ``REDIS`` (``single``, ``sentinel`` or ``cluster``), ``REDIS_REPLICA_PORT``,
        ``SENTINEL_PORTS``, ``CLUSTER_PORTS``, ``WEB_PORT``, ``WEB_WORKERS``, ``WEB_APP``, ``EDGE_NODES``,
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
            cluster_ports=ports("CLUSTER_PORTS", d.cluster_ports),
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
