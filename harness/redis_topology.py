"""Redis with one write point on loopback: a master and a replica (both with TimeSeries, AOF on,
``min-replicas-to-write 1``) watched by 3 Sentinels (quorum 2, ``down-after-milliseconds`` 1000).

`RedisSentinelSet` is what ``make up REDIS=sentinel`` and the failover tests run; `RedisSentinel`
is one Sentinel process. Both servers carry the master's settings because Sentinel swaps their
roles. A node that comes back after a failover is restarted as a replica of the master the
Sentinels name now (`RedisSentinelSet.restart_server`), as a supervisor would do; with a single
replica the master refuses writes until then (``min-replicas-to-write 1``: no acknowledgement a
second failure could lose). Importing this module starts nothing.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
from pathlib import Path
from typing import Sequence

import redis

from harness.process import LOOPBACK
from harness.process import ServerError
from harness.process import ServerProcess
from harness.process import free_ports
from harness.process import wait_until
from harness.redis_server import RedisOptions
from harness.redis_server import RedisServer
from harness.redis_server import find_redis
from harness.redis_server import redis_command


@dataclasses.dataclass(frozen=True)
class SentinelOptions:
    """Settings of the Sentinels and of the write safety of both servers.

    ``min_replicas_max_lag_s``: a master whose only replica has not acknowledged for this long
    refuses writes (a paused or cut-off old master stops accepting quickly).
    """

    master_name: str = "aeroguard"
    quorum: int = 2
    down_after_ms: int = 1000
    failover_timeout_ms: int = 10_000
    min_replicas_max_lag_s: int = 5


@dataclasses.dataclass(frozen=True)
class TopologyPorts:
    """Ports of the two servers (the first starts as master) and of the Sentinels."""

    servers: tuple[int, int]
    sentinels: tuple[int, ...]

    @classmethod
    def free(cls, sentinels: int = 3) -> TopologyPorts:
        """Ports free on 127.0.0.1 now.

        >>> ports = TopologyPorts.free()
        >>> len(set(ports.servers + ports.sentinels))
        5
        """
        ports = free_ports(2 + sentinels)
        return cls((ports[0], ports[1]), tuple(ports[2:]))


# A bounded Redis: past `maxmemory` writes are refused (the web tier answers 503, nothing
# half-written) instead of the process growing until the machine kills it; never evict readings.
BOUNDED = ("--maxmemory", "512mb", "--maxmemory-policy", "noeviction")


def server_options(options: SentinelOptions, replicaof: tuple[str, int] | None) -> RedisOptions:
    """A node's `RedisOptions`: TimeSeries, AOF fsynced every second, refuse unreplicated writes."""
    return RedisOptions(appendonly=True, replicaof=replicaof, extra_args=(
        "--appendfsync", "everysec",
        "--min-replicas-to-write", "1",
        "--min-replicas-max-lag", str(options.min_replicas_max_lag_s),
        "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
        *BOUNDED,
    ))


class RedisSentinel:
    """One Sentinel on 127.0.0.1:``port`` monitoring ``options.master_name`` at ``master_port``.

    Its config file is written fresh at every start (Sentinel rewrites it with what it
    learns while it runs).
    """

    def __init__(self, base_dir: Path, port: int, master_port: int, options: SentinelOptions,
                 name: str = "sentinel") -> None:
        self.base_dir = Path(base_dir)
        self.port = port
        self.master_port = master_port
        self.options = options
        self.name = name
        self._process: ServerProcess | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process and self._process.alive() else None

    @property
    def log_path(self) -> Path:
        return self.base_dir / f"{self.name}.log"

    @property
    def conf_path(self) -> Path:
        return self.base_dir / "sentinel.conf"

    def config_text(self) -> str:
        opts, name = self.options, self.options.master_name
        return "\n".join([
            f"bind {LOOPBACK}", f"port {self.port}", f"dir {self.base_dir}",
            f"sentinel monitor {name} {LOOPBACK} {self.master_port} {opts.quorum}",
            f"sentinel down-after-milliseconds {name} {opts.down_after_ms}",
            f"sentinel failover-timeout {name} {opts.failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
        ]) + "\n"

    def start(self) -> None:
        paths = find_redis()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self.config_text())
        argv = [str(paths.sentinel), str(self.conf_path)]
        self._process = ServerProcess(self.name, argv, self.log_path, env=paths.env(), cwd=self.base_dir)
        self._process.start()

    def client(self) -> redis.Redis:
        return redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=1.0, decode_responses=True)

    def master_state(self) -> dict:
        """``SENTINEL MASTER <name>`` as a dict, or {} when this Sentinel does not answer."""
        try:
            with self.client() as client:
                return client.execute_command("SENTINEL", "MASTER", self.options.master_name)
        except redis.RedisError:
            return {}

    def master_port_now(self) -> int | None:
        """The port of the master this Sentinel names now, or None."""
        try:
            with self.client() as client:
                address = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME",
                                                 self.options.master_name)
        except redis.RedisError:
            return None
        return int(address[1]) if address else None

    def check_running(self) -> None:
        if self._process is None:
            raise ServerError(f"{self.name} was not started")
        self._process.check_running()

    def stop(self, timeout: float = 10.0) -> None:
        if self._process:
            self._process.stop(timeout)


class RedisSentinelSet:
    """A master, its replica and 3 Sentinels, each in its own folder under ``base_dir``.

    Parameters
    ----------
    base_dir
        Holds ``redis-1/``, ``redis-2/`` (AOF, logs) and ``sentinel-<n>/``.
    ports
        `TopologyPorts`; free ports when None.
    options
        `SentinelOptions`.

    At start the first server is master, unless a Sentinel config left in ``base_dir`` by an
    earlier run names the second (a failover happened): the node with the newest data leads.
    """

    def __init__(self, base_dir: Path, ports: TopologyPorts | None = None,
                 options: SentinelOptions | None = None) -> None:
        self.base_dir = Path(base_dir)
        self.ports = ports or TopologyPorts.free()
        self.options = options or SentinelOptions()
        master = self._recorded_master_index()
        self.servers = [self._server(i, None if i == master else self.ports.servers[master])
                        for i in range(2)]
        self.sentinels = [
            RedisSentinel(self.base_dir / f"sentinel-{n + 1}", port, self.ports.servers[master],
                          self.options, name=f"sentinel-{n + 1}")
            for n, port in enumerate(self.ports.sentinels)]

    def _server(self, i: int, master_port: int | None) -> RedisServer:
        replicaof = (LOOPBACK, master_port) if master_port else None
        return RedisServer(self.base_dir / f"redis-{i + 1}", self.ports.servers[i],
                           server_options(self.options, replicaof), name=f"redis-{i + 1}")

    def _recorded_master_index(self) -> int:
        conf = self.base_dir / "sentinel-1" / "sentinel.conf"
        if not conf.exists():
            return 0
        found = re.search(rf"^sentinel monitor {re.escape(self.options.master_name)} \S+ (\d+)",
                          conf.read_text(), re.MULTILINE)
        port = int(found.group(1)) if found else self.ports.servers[0]
        return self.ports.servers.index(port) if port in self.ports.servers else 0

    @property
    def sentinel_addresses(self) -> tuple[tuple[str, int], ...]:
        """What the web tier's ``REDIS_SENTINELS`` lists."""
        return tuple((LOOPBACK, port) for port in self.ports.sentinels)

    @property
    def sentinels_spec(self) -> str:
        """``127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`` (the ``REDIS_SENTINELS`` value)."""
        return ",".join(f"{host}:{port}" for host, port in self.sentinel_addresses)

    def start(self, timeout: float = 30.0) -> None:
        """Start both servers, then the Sentinels once the replica is in sync.

        Sentinel learns replicas from the master's INFO, polled every 10 s: started earlier, it
        would know the replica (and be able to fail over) only that much later.
        """
        for server in self.servers:
            if not server.alive():
                server.start()
        for server in self.servers:
            server.wait_ready(timeout)
        wait_until(self.replica_in_sync, timeout, "the replica to sync with the master")
        for sentinel in self.sentinels:
            sentinel.start()

    def start_from_snapshot(self, rdb: Path, timeout: float = 30.0) -> None:
        """Start with the data of the RDB file `rdb` (a restore); every node's old data is dropped.

        With AOF on, Redis ignores dump.rdb at start, so the master starts with AOF off, loads
        the snapshot, then turns AOF on (which rewrites the AOF from memory) before the replica
        and the Sentinels start.
        """
        master = self.master_index_by_config()
        for server in self.servers:
            shutil.rmtree(server.base_dir / "appendonlydir", ignore_errors=True)
            (server.base_dir / "dump.rdb").unlink(missing_ok=True)
        self.servers[master].base_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(rdb, self.servers[master].base_dir / "dump.rdb")
        loader = RedisServer(self.servers[master].base_dir, self.servers[master].port,
                             dataclasses.replace(self.servers[master].options, appendonly=False),
                             name=self.servers[master].name)
        self.servers[master] = loader
        loader.start()
        loader.wait_ready(timeout)
        with redis.Redis(host=LOOPBACK, port=loader.port, socket_timeout=5.0) as client:
            client.config_set("appendonly", "yes")
            wait_until(lambda: _aof_rewritten(client), timeout, "the AOF rewrite after the restore")
        (loader.base_dir / "dump.rdb").unlink(missing_ok=True)
        self.start(timeout)

    def master_index_by_config(self) -> int:
        """The server started without ``replicaof``."""
        return next(i for i, s in enumerate(self.servers) if s.options.replicaof is None)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the replica is in sync and every Sentinel knows the replica and its peers."""
        for server in self.servers:
            server.wait_ready(timeout)

        def ready() -> bool:
            for sentinel in self.sentinels:
                sentinel.check_running()
            states = [s.master_state() for s in self.sentinels]
            return (self.replica_in_sync() and
                    all(int(st.get("num-slaves", 0)) >= 1 and
                        int(st.get("num-other-sentinels", 0)) >= len(self.sentinels) - 1 for st in states))
        wait_until(ready, timeout, "Sentinels to see the replica and each other", interval=0.1)

    def master_index(self) -> int | None:
        """Index of the server most Sentinels name as master now, or None."""
        ports = [s.master_port_now() for s in self.sentinels]
        named = [p for p in ports if p in self.ports.servers]
        if not named:
            return None
        port = max(set(named), key=named.count)
        return self.ports.servers.index(port)

    def role(self, i: int) -> str | None:
        """``master``/``slave`` as the server itself reports it, or None when it does not answer."""
        try:
            answer = redis_command(self.ports.servers[i], "ROLE", timeout=0.5)
        except OSError:
            return None
        found = re.search(rb"\$\d+\r\n(master|slave)\r\n", answer)
        return found.group(1).decode() if found else None

    def replica_in_sync(self) -> bool:
        """True when some server is a replica whose link to its master is up."""
        for server in self.servers:
            try:
                info = redis_command(server.port, "INFO", "replication", timeout=0.5)
            except OSError:
                continue
            if b"role:slave" in info and b"master_link_status:up" in info:
                return True
        return False

    def kill_server(self, i: int) -> None:
        """SIGKILL server ``i`` (a crash)."""
        self.servers[i].kill()

    def pause_server(self, i: int) -> None:
        """SIGSTOP server ``i`` (a GC pause or a frozen VM, seen from outside)."""
        self._signal(i, signal.SIGSTOP)

    def resume_server(self, i: int) -> None:
        self._signal(i, signal.SIGCONT)

    def _signal(self, i: int, signum: int) -> None:
        if not self.servers[i].alive():
            raise ServerError(f"{self.servers[i].name} is not running")
        os.kill(self.servers[i].pid, signum)

    def restart_server(self, i: int, timeout: float = 30.0) -> None:
        """Start server ``i`` again as a replica of the master the Sentinels name now."""
        master = self.master_index()
        if master is None or master == i:
            raise ServerError(f"no other master to rejoin for {self.servers[i].name}")
        self.servers[i].stop()
        self.servers[i] = self._server(i, self.ports.servers[master])
        self.servers[i].start()
        self.servers[i].wait_ready(timeout)

    def stop(self) -> None:
        """Sentinels first (no failover while the servers stop), then the replica, then the master."""
        for sentinel in self.sentinels:
            sentinel.stop()
        for server in self.servers:
            if server.alive():  # a paused server would ignore SIGTERM
                os.kill(server.pid, signal.SIGCONT)
        master = self.master_index_by_role()
        for i in sorted(range(2), key=lambda i: i == master):
            self.servers[i].stop()

    def master_index_by_role(self) -> int:
        roles = [self.role(i) for i in range(2)]
        return roles.index("master") if "master" in roles else 0

    def processes(self) -> Sequence[tuple[str, int | None, int, Path]]:
        """(name, pid, port, log) of each process, servers first."""
        return [(s.name, s.pid, s.port, s.log_path) for s in self.servers] + \
               [(s.name, s.pid, s.port, s.log_path) for s in self.sentinels]


def _aof_rewritten(client: redis.Redis) -> bool:
    info = client.info("persistence")
    return info.get("aof_enabled") == 1 and not info.get("aof_rewrite_in_progress") and \
        not info.get("aof_rewrite_scheduled")
