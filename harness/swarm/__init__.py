"""docker-stack.yml on a private single-node Swarm (`make swarm-up`, `scripts/swarm.py`).

Read `harness.swarm.engine` first (the engine this starts and stops by PID, and the docker
client pointed at it and only at it), then `harness.swarm.images` (the images, built from
Debian packages) and `harness.swarm.deploy` (secrets, `docker stack deploy`, convergence);
`harness.swarm.lifecycle` puts them together (`up`, `down`).
Importing a module starts nothing.
"""
from __future__ import annotations

from harness.swarm.deploy import STACK
from harness.swarm.deploy import WEB_URL
from harness.swarm.deploy import service_status
from harness.swarm.deploy import wait_converged
from harness.swarm.engine import SECRETS_DIR
from harness.swarm.engine import SOCKET
from harness.swarm.engine import STATE
from harness.swarm.engine import Engine
from harness.swarm.engine import SwarmError

__all__ = ["SECRETS_DIR", "SOCKET", "STACK", "STATE", "WEB_URL", "Engine", "SwarmError", "service_status",
           "wait_converged"]
