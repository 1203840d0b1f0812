"""ZooKeeper (Debian's ``zookeeper`` package) on loopback: `ZooKeeperEnsemble`.

An ensemble of JVM processes (3 nodes normally), each with its own zoo.cfg, data folder and
log, started as `harness.process.ServerProcess`es; `zk_command` speaks the four-letter words.
Importing this module starts nothing.
"""
from __future__ import annotations

import dataclasses
import shutil
import socket
from pathlib import Path
from typing import Sequence

from harness.process import LOOPBACK
from harness.process import SETUP_HINT
from harness.process import ServerError
from harness.process import ServerNotInstalled
from harness.process import ServerProcess
from harness.process import free_ports
from harness.process import wait_until

ZK_JAVA_DIR = Path("/usr/share/java")
ZK_MAIN = "org.apache.zookeeper.server.quorum.QuorumPeerMain"


def zookeeper_classpath() -> str:
    """Classpath for Debian's ZooKeeper server, with slf4j-simple so it logs to stderr.

    zookeeper.jar's manifest lists its own dependencies under /usr/share/java.
    """
    jar = ZK_JAVA_DIR / "zookeeper.jar"
    if not jar.exists():
        raise ServerNotInstalled(f"zookeeper jars not found ({jar}): {SETUP_HINT}")
    parts = [str(jar)]
    logger = ZK_JAVA_DIR / "slf4j-simple.jar"
    if logger.exists():
        parts.append(str(logger))
    return ":".join(parts)


def find_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise ServerNotInstalled(f"java not found (Debian: default-jre-headless): {SETUP_HINT}")
    return java


def zk_command(port: int, word: str, timeout: float = 1.0) -> str:
    """Send a four-letter word (``srvr``, ``ruok``, ``mntr``) and return the whole answer."""
    chunks = []
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        sock.sendall(word.encode())
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


@dataclasses.dataclass(frozen=True)
class ZooKeeperOptions:
    """Settings of every node in an ensemble.

    ``force_sync=False`` skips fsync of the transaction log: safe against process kills
    (the faults we drill), not against power loss, and it keeps tests fast on slow disks.
    Session timeouts are clamped by the server to [2, 20] x ``tick_ms``.
    """

    tick_ms: int = 500
    init_limit: int = 10
    sync_limit: int = 5
    force_sync: bool = False
    heap_mb: int = 256
    extra_cfg: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class ZooKeeperNodePorts:
    client: int
    peer: int
    election: int


class ZooKeeperEnsemble:
    """A ZooKeeper ensemble (3 nodes normally) of JVM processes on 127.0.0.1.

    Parameters
    ----------
    base_dir
        Holds ``zk<N>/`` (zoo.cfg, myid, data) and ``zk<N>.log`` per node.
    client_ports
        One client port per node; their count is the ensemble size.
    tick_ms
        ZooKeeper tickTime (overrides ``options.tick_ms``).
    quorum_ports
        ``(peer, election)`` per node; free ports are picked when None.
    options
        `ZooKeeperOptions` for the rest.
    """

    def __init__(self, base_dir: Path, client_ports: Sequence[int], tick_ms: int = 500,
                 quorum_ports: Sequence[tuple[int, int]] | None = None,
                 options: ZooKeeperOptions | None = None) -> None:
        if len(client_ports) < 1:
            raise ValueError("client_ports must name at least one port")
        if quorum_ports is None:
            spare = free_ports(2 * len(client_ports), exclude=client_ports)
            quorum_ports = list(zip(spare[0::2], spare[1::2]))
        if len(quorum_ports) != len(client_ports):
            raise ValueError("quorum_ports must have one (peer, election) pair per client port")
        self.base_dir = Path(base_dir)
        self.options = dataclasses.replace(options or ZooKeeperOptions(), tick_ms=tick_ms)
        self.ports = [ZooKeeperNodePorts(c, p, e) for c, (p, e) in zip(client_ports, quorum_ports)]
        self._processes: list[ServerProcess | None] = [None] * len(self.ports)

    def __len__(self) -> int:
        return len(self.ports)

    @property
    def hosts(self) -> str:
        """Connection string for clients: ``127.0.0.1:p1,127.0.0.1:p2,...``."""
        return ",".join(f"{LOOPBACK}:{p.client}" for p in self.ports)

    @property
    def pids(self) -> list[int | None]:
        return [proc.pid if proc and proc.alive() else None for proc in self._processes]

    def node_dir(self, i: int) -> Path:
        return self.base_dir / f"zk{i + 1}"

    def log_path(self, i: int) -> Path:
        return self.base_dir / f"zk{i + 1}.log"

    def config_text(self, i: int) -> str:
        opts = self.options
        lines = [
            f"tickTime={opts.tick_ms}",
            f"initLimit={opts.init_limit}",
            f"syncLimit={opts.sync_limit}",
            f"minSessionTimeout={2 * opts.tick_ms}",
            f"maxSessionTimeout={20 * opts.tick_ms}",
            f"dataDir={self.node_dir(i) / 'data'}",
            f"clientPort={self.ports[i].client}",
            f"clientPortAddress={LOOPBACK}",
            "admin.enableServer=false",
            "4lw.commands.whitelist=ruok,srvr,mntr",
            f"forceSync={'yes' if opts.force_sync else 'no'}",
        ]
        lines += [f"server.{n + 1}={LOOPBACK}:{p.peer}:{p.election}" for n, p in enumerate(self.ports)]
        lines += [f"{key}={value}" for key, value in opts.extra_cfg]
        return "\n".join(lines) + "\n"

    def _write_node(self, i: int) -> Path:
        data = self.node_dir(i) / "data"
        data.mkdir(parents=True, exist_ok=True)
        (data / "myid").write_text(f"{i + 1}\n")
        cfg = self.node_dir(i) / "zoo.cfg"
        cfg.write_text(self.config_text(i))
        return cfg

    def start_node(self, i: int) -> None:
        """Start node ``i`` (0-based); a no-op if it runs."""
        proc = self._processes[i]
        if proc and proc.alive():
            return
        argv = [find_java(), f"-Xmx{self.options.heap_mb}m", "-XX:+UseSerialGC",
                "-Dorg.slf4j.simpleLogger.showDateTime=true",
                "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS",
                "-cp", zookeeper_classpath(), ZK_MAIN, str(self._write_node(i))]
        self._processes[i] = ServerProcess(f"zookeeper node {i + 1}", argv, self.log_path(i),
                                           cwd=self.node_dir(i))
        self._processes[i].start()

    def start(self) -> None:
        zookeeper_classpath()  # fail with the setup hint before any process starts
        for i in range(len(self.ports)):
            self.start_node(i)

    def stop_node(self, i: int, timeout: float = 10.0) -> None:
        """Stop node ``i`` gracefully (SIGTERM, SIGKILL after ``timeout``)."""
        if self._processes[i]:
            self._processes[i].stop(timeout)

    def kill_node(self, i: int) -> None:
        """SIGKILL node ``i`` (a crash)."""
        if self._processes[i]:
            self._processes[i].kill()

    def node_pid(self, i: int) -> int | None:
        return self.pids[i]

    def mode(self, i: int) -> str | None:
        """``leader``/``follower`` from ``srvr``, or None when the node is not serving."""
        try:
            answer = zk_command(self.ports[i].client, "srvr")
        except OSError:
            return None
        for line in answer.splitlines():
            if line.startswith("Mode:"):
                return line.split(":", 1)[1].strip()
        return None

    def leader(self) -> int | None:
        """Index of the node that is leader now, or None."""
        modes = [self.mode(i) for i in range(len(self.ports))]
        return modes.index("leader") if "leader" in modes else None

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until every running node serves (answers ``srvr`` with a Mode)."""
        def ready() -> bool:
            running = [i for i, proc in enumerate(self._processes) if proc is not None]
            if not running:
                raise ServerError("zookeeper ensemble was not started")
            for i in running:
                self._processes[i].check_running()
            return all(self.mode(i) in ("leader", "follower", "standalone") for i in running
                       if self._processes[i].alive())
        wait_until(ready, timeout, f"zookeeper ensemble {self.hosts} to serve", interval=0.1)

    def stop(self, timeout: float = 10.0) -> None:
        for i in range(len(self.ports)):
            self.stop_node(i, timeout)
