"""Local processes on loopback: free ports, PID checks, stopping by PID, `ServerProcess`.

The tests' session fixtures and the local stack launcher (`harness.stack`) both start servers
through `harness.redis_server` and `harness.zookeeper`, which run each server as a
`ServerProcess`: in its own session (``start_new_session``), logging to a file, stopped by its
PID (SIGTERM, then SIGKILL after a timeout). `ServerError` is the root of every error the
harness raises about a server. Importing this module starts nothing.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable
from typing import Mapping
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]
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


def cpu_by_program(root: int | None = None) -> dict[str, float]:
    """CPU seconds (user + system) used so far by `root` (default: this process) and every
    process below it, summed by program: the module after ``-m`` for Python, else the
    executable's name (``gunicorn``, ``scripts.tfserving_standin``, ``redis-server``). Call it
    before and after a load to see which process a request's CPU went to.

    >>> cpu_by_program()["this process"] > 0
    True
    """
    root = os.getpid() if root is None else root
    parents, used = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        parents[int(entry.name)] = int(fields[1])
        used[int(entry.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    found: dict[str, float] = {}
    for pid in used:
        ancestor = pid
        while ancestor not in (root, 0, 1) and ancestor in parents:
            ancestor = parents[ancestor]
        if ancestor == root:
            name = "this process" if pid == root else _program(pid)
            found[name] = found.get(name, 0.0) + used[pid]
    return found


def _program(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "?"
    if "-m" in argv[:-1]:
        return argv[argv.index("-m") + 1]
    return Path(argv[0].split(" ")[0]).name or "?"  # redis-server writes its address into argv[0]


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
