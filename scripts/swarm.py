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
can hold. The steps themselves are in `harness.swarm` (engine, images, deploy, lifecycle).
"""
from __future__ import annotations

import argparse
import sys

from harness.swarm.engine import SOCKET
from harness.swarm.engine import SwarmError
from harness.swarm.lifecycle import down
from harness.swarm.lifecycle import up


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
