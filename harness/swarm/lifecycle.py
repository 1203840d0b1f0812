"""The local swarm's whole life (`make swarm-up`, `make swarm-down`): `up` starts the engine,
makes the swarm, builds the images, creates the secrets, deploys and waits for convergence;
`down` removes the stack, its volumes and the swarm, and stops the engine `up` started.
``scripts/swarm.py`` is the command line.
"""
from __future__ import annotations

import time

from harness.process import ROOT
from harness.swarm.deploy import STACK
from harness.swarm.deploy import WEB_URL
from harness.swarm.deploy import create_secrets
from harness.swarm.deploy import deploy
from harness.swarm.deploy import redis_variant
from harness.swarm.deploy import stack_files
from harness.swarm.deploy import wait_converged
from harness.swarm.engine import SECRETS_DIR
from harness.swarm.engine import STATE
from harness.swarm.engine import Engine
from harness.swarm.engine import info
from harness.swarm.engine import say
from harness.swarm.images import BASE_IMAGE
from harness.swarm.images import build_base_image
from harness.swarm.images import build_images


def up() -> int:
    variant = redis_variant()
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
    files = stack_files(variant)
    say(f"docker stack deploy {STACK} ({' + '.join(p.relative_to(ROOT).as_posix() for p in files)})")
    deploy(engine, images, variant)
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
