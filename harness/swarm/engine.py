"""The private docker engine of `make swarm-up`: started and stopped by PID, a single-node swarm
bound to 127.0.0.1, and the docker client pointed at it (and only at it).

Everything lives under ``.run/swarm/`` (AEROGUARD_SWARM_DIR): the engine's data root, exec
root, PID file, log and socket, the secrets' values and the build logs.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from harness.process import ROOT

STATE = Path(os.environ.get("AEROGUARD_SWARM_DIR", ROOT / ".run" / "swarm"))
SOCKET = STATE / "docker.sock"
PIDFILE = STATE / "dockerd.pid"
SECRETS_DIR = STATE / "secrets"
LOGS = STATE / "logs"
GWBRIDGE_BINDING = '{{index .Options "com.docker.network.bridge.host_binding_ipv4"}}'


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def info(message: str) -> None:
    print(f"    {message}", flush=True)


class SwarmError(RuntimeError):
    """A step of swarm-up/down that cannot go on; the message says what to do."""


class Engine:
    """The dockerd this module starts, and the docker client pointed at it (and only at it)."""

    def __init__(self, state: Path = STATE):
        self.state = state
        self.socket = state / "docker.sock"
        self.pidfile = state / "dockerd.pid"
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}", "DOCKER_BUILDKIT": "1"}
        self.env.pop("DOCKER_CONTEXT", None)

    @staticmethod
    def client() -> str:
        """The docker client shipped with the engine (same version), else the one on PATH.

        Debian's docker.io puts dockerd in /usr/sbin and its client in /usr/bin; a newer client
        elsewhere on PATH may need the buildx plugin for BuildKit builds.
        """
        dockerd = shutil.which("dockerd")
        for candidate in ([Path(dockerd).with_name("docker")] if dockerd else []) + [Path("/usr/bin/docker")]:
            if candidate.exists():
                return str(candidate)
        return shutil.which("docker") or "docker"

    def docker(self, *args: str, check: bool = True, capture: bool = True, extra_env: dict | None = None,
               **kwargs) -> subprocess.CompletedProcess:
        result = subprocess.run([self.client(), *args], env={**self.env, **(extra_env or {})}, text=True,
                                capture_output=capture, **kwargs)
        if check and result.returncode != 0:
            raise SwarmError(f"docker {' '.join(args[:3])} failed: {(result.stderr or '').strip()[-2000:]}")
        return result

    def pid(self) -> int | None:
        """The PID of the engine this module started, if it still runs."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            ours = Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd"
        except FileNotFoundError:
            return None
        return pid if ours and alive(pid) else None   # a reused PID is never "ours"

    def answers(self) -> bool:
        return self.docker("version", "--format", "{{.Server.Version}}", check=False).returncode == 0

    def start(self) -> float:
        """Starts dockerd (installing docker.io first if absent); returns seconds to ready."""
        if self.pid() and self.answers():
            info(f"engine already running (pid {self.pid()}, {self.socket})")
            return 0.0
        if not shutil.which("dockerd"):
            apt_install("docker.io")
        for sub in ("data", "exec"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        LOGS.mkdir(parents=True, exist_ok=True)
        argv = ["dockerd", "--data-root", str(self.state / "data"), "--exec-root", str(self.state / "exec"),
                "--pidfile", str(self.pidfile), "--host", f"unix://{self.socket}",
                # Plain containers' published ports bind loopback (swarm tasks': `swarm_init`).
                "--ip", "127.0.0.1"]
        started = time.monotonic()
        with open(LOGS / "dockerd.log", "ab") as log:
            subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        deadline = started + 60
        while not self.answers():
            if time.monotonic() > deadline:
                raise SwarmError(f"dockerd did not answer on {self.socket} within 60 s (see {LOGS / 'dockerd.log'})")
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        info(f"engine started in {elapsed:.1f} s (pid {self.pid()}, {self.socket})")
        return elapsed

    def stop(self) -> None:
        pid = self.pid()
        if pid is None:
            info("no engine of ours is running")
            return
        os.kill(pid, signal.SIGTERM)
        # dockerd removes its PID file before it has finished: wait for the process itself.
        deadline = time.monotonic() + 60
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.3)
        if alive(pid):
            info(f"dockerd {pid} still runs after 60 s: SIGKILL")
            os.kill(pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)
        info(f"engine {pid} stopped")
        # The default bridge it made stays behind a stopped dockerd; no other engine runs here
        # to use it (checked), so it goes too.
        engines = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True).stdout.split()
        if not [other for other in engines if alive(int(other))]:   # ours may linger as a zombie
            if subprocess.run(["ip", "link", "delete", "docker0"], capture_output=True).returncode == 0:
                info("bridge docker0 removed")

    def swarm_init(self) -> None:
        """A single-node swarm on 127.0.0.1 whose host-mode ports bind 127.0.0.1 only.

        Swarm tasks publish through the `docker_gwbridge` network, which ignores dockerd's
        --ip: made before `swarm init` with host_binding_ipv4=127.0.0.1, their ports bind
        loopback instead of 0.0.0.0 (Docker's documented way to customise docker_gwbridge).
        """
        state = self.docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()
        if state == "active":
            binding = self.docker("network", "inspect", "--format", GWBRIDGE_BINDING, "docker_gwbridge",
                                  check=False).stdout.strip()
            if binding != "127.0.0.1":
                raise SwarmError("this swarm's docker_gwbridge binds published ports beyond 127.0.0.1: "
                                 "run `make swarm-down`, then `make swarm-up`")
            info("swarm already initialised")
            return
        self.docker("network", "rm", "docker_gwbridge", check=False)
        self.docker("network", "create", "--driver", "bridge",
                    "--opt", "com.docker.network.bridge.name=docker_gwbridge",
                    "--opt", "com.docker.network.bridge.enable_icc=false",
                    "--opt", "com.docker.network.bridge.enable_ip_masquerade=true",
                    "--opt", "com.docker.network.bridge.host_binding_ipv4=127.0.0.1",
                    "docker_gwbridge")
        self.docker("swarm", "init", "--advertise-addr", "127.0.0.1", "--listen-addr", "127.0.0.1:2377")
        info("single-node swarm initialised (advertise and listen on 127.0.0.1)")

    def image_exists(self, name: str) -> bool:
        return self.docker("image", "inspect", name, check=False).returncode == 0


def alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def apt_install(*packages: str) -> None:
    say(f"apt-get install {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    argv = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    if subprocess.run(argv, env=env).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=False)
        if subprocess.run(argv, env=env).returncode != 0:
            raise SwarmError(f"could not install {' '.join(packages)} with apt-get")
