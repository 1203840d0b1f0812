"""A local Redis Cluster on loopback: 3 masters and 3 replicas, every node with TimeSeries.

`RedisCluster` is what ``make up REDIS=cluster`` and the cluster variant of the tests run. Each
node is a `harness.redis_server.RedisServer` with the write safety of the Sentinel topology
(AOF fsynced every second, ``min-replicas-to-write 1``, bounded memory: `server_options`) plus
``cluster-enabled``; the cluster is formed once by ``redis-cli --cluster create …
--cluster-replicas 1 --cluster-yes`` and, on a later start from the same folder, rejoins from
each node's ``nodes.conf``. A node's cluster bus is its port + 10000, so both must be free.
The nodes are stopped by PID. Open-source cluster mode has no cross-shard coordinator:
``TS.MRANGE``/``TS.QUERYINDEX`` answer only for the shard they reach. Importing this module
starts nothing.
"""
from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path
from typing import Sequence

import redis

from harness.process import LOOPBACK
from harness.process import ServerError
from harness.process import free_ports
from harness.process import port_open
from harness.process import wait_until
from harness.redis_server import RedisOptions
from harness.redis_server import RedisServer
from harness.redis_server import find_redis
from harness.redis_topology import SentinelOptions
from harness.redis_topology import server_options

SLOTS = 16384
BUS_OFFSET = 10000  # Redis Cluster's bus port is the client port + 10000


def cluster_ports(count: int = 6) -> list[int]:
    """`count` ports free on 127.0.0.1 whose cluster bus ports (+10000) are free too.

    >>> ports = cluster_ports()
    >>> len(set(ports)), all(p + BUS_OFFSET <= 65535 for p in ports)
    (6, True)
    """
    chosen: list[int] = []
    while len(chosen) < count:
        for port in free_ports(count, exclude=chosen):
            if port + BUS_OFFSET <= 65535 and not port_open(port + BUS_OFFSET) and len(chosen) < count:
                chosen.append(port)
    return chosen


def node_options(node_timeout_ms: int = 2000) -> RedisOptions:
    """One cluster node's options: the Sentinel topology's write safety, and cluster mode."""
    safe = server_options(SentinelOptions(), None)
    return dataclasses.replace(safe, extra_args=(
        *safe.extra_args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
        "--cluster-node-timeout", str(node_timeout_ms)))


class RedisCluster:
    """3 masters and 3 replicas on 127.0.0.1, each in its own folder under ``base_dir``.

    Parameters
    ----------
    base_dir
        Holds ``node-1/`` … ``node-6/`` (AOF, ``nodes.conf``, log).
    ports
        Six client ports (bus ports +10000 must be free as well); `cluster_ports` when None.
    password
        Sets ``requirepass`` and ``masterauth`` on every node when given.
    """

    replicas_per_master = 1

    def __init__(self, base_dir: Path, ports: Sequence[int] | None = None, password: str | None = None) -> None:
        self.base_dir = Path(base_dir)
        self.ports = tuple(ports or cluster_ports())
        if len(self.ports) != 6:
            raise ValueError(f"ports: a cluster of 3 masters and 3 replicas needs 6 ports, not {len(self.ports)}")
        self.password = password
        options = node_options()
        if password:
            options = dataclasses.replace(options, extra_args=(
                *options.extra_args, "--requirepass", password, "--masterauth", password))
        self.nodes = [RedisServer(self.base_dir / f"node-{i + 1}", port, options, name=f"redis-node-{i + 1}")
                      for i, port in enumerate(self.ports)]

    @property
    def startup_nodes(self) -> str:
        """``127.0.0.1:p1,…,127.0.0.1:p6`` (the web tier's ``REDIS_CLUSTER_NODES``)."""
        return ",".join(f"{LOOPBACK}:{port}" for port in self.ports)

    def node_client(self, port: int) -> redis.Redis:
        """A plain client of one node (not cluster-aware), short timeouts."""
        return redis.Redis(host=LOOPBACK, port=port, password=self.password, socket_timeout=1.0,
                           socket_connect_timeout=1.0, decode_responses=True)

    def client(self) -> redis.RedisCluster:
        """A cluster-aware client (``decode_responses=True``) of this cluster."""
        return redis.RedisCluster(host=LOOPBACK, port=self.ports[0], password=self.password,
                                  decode_responses=True, socket_timeout=2.0)

    def start(self, timeout: float = 60.0) -> None:
        """Start every node, form the cluster unless the nodes remember one, wait until ready."""
        for node in self.nodes:
            if not node.alive():
                node.start()
        for node in self.nodes:
            node.wait_ready(timeout)
        if not self._slots_assigned():
            self._create(timeout)
        self.wait_ready(timeout)

    def _slots_assigned(self) -> bool:
        with self.node_client(self.ports[0]) as client:
            return int(client.cluster("info")["cluster_slots_assigned"]) == SLOTS

    def _create(self, timeout: float) -> None:
        paths = find_redis()
        argv = [str(paths.cli), "--cluster", "create", *(f"{LOOPBACK}:{p}" for p in self.ports),
                "--cluster-replicas", str(self.replicas_per_master), "--cluster-yes"]
        env = paths.env()
        if self.password:
            env["REDISCLI_AUTH"] = self.password  # not on the command line: ps would show it
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise ServerError(f"redis-cli --cluster create failed ({done.returncode}):\n"
                              f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until every node says ``cluster_state:ok`` with all 16384 slots covered and
        every master has a replica whose link is up."""
        def ready() -> bool:
            for node in self.nodes:
                if not node.alive():
                    raise ServerError(f"{node.name} exited (log {node.log_path})")
            return self.healthy()
        wait_until(ready, timeout, "the cluster: state ok, 16384 slots, a synced replica per master",
                   interval=0.2)

    def healthy(self) -> bool:
        """True when every node answers with ``cluster_state:ok`` and 16384 slots ok, and each of
        the 3 masters has a connected replica in sync."""
        try:
            for port in self.ports:
                with self.node_client(port) as client:
                    info = client.cluster("info")
                    if info["cluster_state"] != "ok" or int(info["cluster_slots_ok"]) != SLOTS:
                        return False
                    replication = client.info("replication")
                    if replication["role"] == "slave" and replication.get("master_link_status") != "up":
                        return False
            masters = self.masters()
        except redis.RedisError:
            return False
        return len(masters) == 3 and all(len(replicas) >= self.replicas_per_master
                                         for replicas in masters.values())

    def masters(self) -> dict[int, list[int]]:
        """Each master's port with its replicas' ports, as the first live node sees them."""
        for port in self.ports:
            try:
                with self.node_client(port) as client:
                    nodes = client.execute_command("CLUSTER", "NODES")
            except redis.ConnectionError:
                continue
            return _masters(nodes if isinstance(nodes, str) else _nodes_text(nodes))
        raise ServerError("no cluster node answers")

    def flushall(self) -> None:
        """FLUSHALL on every master (replicas follow)."""
        for port in self.masters():
            with self.node_client(port) as client:
                client.flushall()

    def node_index(self, port: int) -> int:
        return self.ports.index(port)

    def kill_node(self, i: int) -> None:
        """SIGKILL node ``i`` (a crash)."""
        self.nodes[i].kill()

    def stop(self) -> None:
        """Replicas first, then masters (no failover while the cluster goes down)."""
        try:
            masters = set(self.masters())
        except ServerError:
            masters = set()
        for node in sorted(self.nodes, key=lambda node: node.port in masters):
            node.stop()

    def processes(self) -> list[tuple[str, int | None, int, Path]]:
        """(name, pid, port, log) of each node."""
        return [(node.name, node.pid, node.port, node.log_path) for node in self.nodes]


def _nodes_text(nodes: dict) -> str:
    """redis-py parses ``CLUSTER NODES`` into a dict; rebuild the lines `_masters` reads."""
    lines = []
    for address, node in nodes.items():
        flags = node.get("flags", "")
        lines.append(f"{node['node_id']} {address} {flags} {node.get('master_id', '-')} "
                     f"0 0 0 {'connected' if node.get('connected') else 'disconnected'}")
    return "\n".join(lines)


def _masters(nodes: str) -> dict[int, list[int]]:
    """``CLUSTER NODES`` text -> {master port: [replica ports]} of connected, non-failed nodes.

    >>> text = ("a 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\\n"
    ...         "b 127.0.0.1:7003@17003 slave a 0 0 1 connected\\n"
    ...         "c 127.0.0.1:7001@17001 master,fail - 0 0 2 disconnected")
    >>> _masters(text)
    {7000: [7003]}
    """
    by_id: dict[str, int] = {}
    replicas: list[tuple[str, int]] = []
    for line in nodes.strip().splitlines():
        fields = line.split()
        node_id, address, flags, master_id, link = fields[0], fields[1], fields[2], fields[3], fields[7]
        if "fail" in flags.split(",") or link != "connected":
            continue
        port = int(address.split("@")[0].rsplit(":", 1)[1])
        if "master" in flags.split(","):
            by_id[node_id] = port
        elif "slave" in flags.split(","):
            replicas.append((master_id, port))
    found: dict[int, list[int]] = {port: [] for port in by_id.values()}
    for master_id, port in replicas:
        if master_id in by_id:
            found[by_id[master_id]].append(port)
    return found
