"""The stack on the swarm: its secrets (made once, kept under ``.run/swarm/secrets``), `docker
stack deploy` of docker-stack.yml with deploy/swarm-local.yml (and, with ``REDIS=cluster``,
deploy/swarm-cluster.yml), and waiting until every service has converged."""
from __future__ import annotations

import os
import secrets
import subprocess
import time
from pathlib import Path

from harness.process import ROOT
from harness.swarm.engine import SECRETS_DIR
from harness.swarm.engine import Engine
from harness.swarm.engine import SwarmError
from harness.swarm.engine import info

STACK = "aeroguard"
STACK_FILES = [ROOT / "docker-stack.yml", ROOT / "deploy" / "swarm-local.yml"]
WEB_URL = "https://127.0.0.1:8443"
# Services deploy/swarm-local.yml leaves out: their images cannot be had here.
OMITTED = ("grafana", "visualizer")
# `make swarm-up REDIS=cluster`: storage as a Redis Cluster. The override cannot delete the
# Sentinel topology's services it replaces: scaled to 0 like OMITTED.
CLUSTER_FILE = ROOT / "deploy" / "swarm-cluster.yml"
SENTINEL_SERVICES = ("redis-1", "redis-2", "redis-sentinel-1", "redis-sentinel-2", "redis-sentinel-3")
# Services whose task runs once and exits 0 (Complete): converged then, not before.
ONE_SHOT = ("redis-cluster-create",)
# The secrets docker-stack.yml names (external), with how each value is made.
HEX_SECRETS = {
    "aeroguard_redis_password": 32,
    "aeroguard_api_keys": 32,
    "aeroguard_admin_keys": 32,
    "aeroguard_grafana_admin_password": 16,
    "aeroguard_redis_grafana_password": 32,
}


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


def redis_variant() -> str:
    """``REDIS`` as `make swarm-up REDIS=cluster` passes it: "sentinel" (the default) or "cluster"."""
    variant = os.environ.get("REDIS") or "sentinel"
    if variant not in ("sentinel", "cluster"):
        raise SwarmError(f"REDIS={variant}: the swarm stack has REDIS=sentinel (the default) or REDIS=cluster")
    return variant


def stack_files(variant: str = "sentinel") -> list[Path]:
    return STACK_FILES + ([CLUSTER_FILE] if variant == "cluster" else [])


def scaled_to_zero(variant: str = "sentinel") -> tuple[str, ...]:
    return OMITTED + (SENTINEL_SERVICES if variant == "cluster" else ())


def deploy(engine: Engine, images: dict[str, str], variant: str = "sentinel") -> None:
    argv = ["stack", "deploy", "--resolve-image", "never", "--prune"]
    for path in stack_files(variant):
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
    zero = scaled_to_zero(variant)
    engine.docker("service", "scale", "--detach", *(f"{STACK}_{name}=0" for name in zero))
    info(f"not deployed here (0 replicas): {', '.join(zero)}")


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
    for name in set(ONE_SHOT) & set(desired):
        states = engine.docker("service", "ps", "--format", "{{.CurrentState}}", f"{STACK}_{name}").stdout
        if any(state.startswith("Complete") for state in states.splitlines()):
            ready[name] = desired[name]
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
            for detail in why_pending(engine, pending):
                info(detail)
            raise SwarmError(f"not converged after {timeout:.0f} s: {line} (docker service ps {STACK}_NAME)")
        time.sleep(3)


def why_pending(engine: Engine, pending: dict[str, tuple[int, int]]) -> list[str]:
    """What the engine says of the services that did not converge: each one's newest tasks
    (state and error), its containers' status, the last health check's output and the last log
    lines, and the engine's storage driver and free space, so a failed run (in CI, say) tells
    why without a shell on that machine."""
    lines = []
    driver = engine.docker("info", "--format", "{{.Driver}} {{.CgroupDriver}} cpus={{.NCPU}} mem={{.MemTotal}}",
                           check=False).stdout.strip()
    space = subprocess.run(["df", "-h", str(engine.state)], capture_output=True, text=True).stdout.strip()
    lines += [f"engine: {driver}", *space.splitlines()[-1:]]
    for name in sorted(pending)[:6]:
        tasks = engine.docker("service", "ps", "--no-trunc", "--format", "{{.CurrentState}} | {{.Error}}",
                              f"{STACK}_{name}", check=False)
        lines += [f"{name}: task {t}" for t in (tasks.stdout or tasks.stderr).strip().splitlines()[:3]]
        ids = engine.docker("ps", "-aq", "--filter", f"label=com.docker.swarm.service.name={STACK}_{name}",
                            check=False).stdout.split()[:1]
        for cid in ids:
            state = engine.docker("inspect", "--format", "{{.State.Status}} exit={{.State.ExitCode}} "
                                  "{{.State.Error}} {{if .State.Health}}health={{.State.Health.Status}}: "
                                  "{{range .State.Health.Log}}{{.Output}}{{end}}{{end}}", cid, check=False)
            lines.append(f"{name}: container {' '.join(state.stdout.split())[-400:]}")
            logs = engine.docker("logs", "--tail", "8", cid, check=False)
            lines += [f"{name}:   {row}" for row in (logs.stdout + logs.stderr).strip().splitlines()[-8:]]
    return lines
