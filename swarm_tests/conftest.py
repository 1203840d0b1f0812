"""Fixtures of `make swarm-test`: the stack `make swarm-up` deployed on the private engine.

Nothing here starts anything. If the engine or the stack is not there, every test fails (never
skips) with the command to run. Traffic goes only to 127.0.0.1 (HAProxy's published port) and,
through `docker exec`, to the stack's own containers.
"""
from __future__ import annotations

import json
import subprocess

import pytest
import requests

from harness import swarm

WEB = swarm.WEB_URL


class Stack:
    """The deployed stack: its docker client, secrets and HTTPS session to HAProxy."""

    def __init__(self, engine: swarm.Engine):
        self.engine = engine
        self.web = WEB
        self.cert = str(swarm.SECRETS_DIR / "aeroguard_tls_certificate")
        self.api_key = (swarm.SECRETS_DIR / "aeroguard_api_keys").read_text().splitlines()[0]
        self.admin_key = (swarm.SECRETS_DIR / "aeroguard_admin_keys").read_text().splitlines()[0]

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.engine.docker(*args, check=check)

    def get(self, path: str, key: bool = False, **kwargs) -> requests.Response:
        headers = {"X-API-Key": self.api_key} if key else {}
        # A new connection per request: HAProxy balances connections, not requests.
        return requests.get(f"{WEB}{path}", headers=headers, verify=self.cert, timeout=10,
                            **kwargs)

    def containers(self, service: str) -> list[str]:
        """IDs of the running containers of `service` (e.g. "web")."""
        return self.docker("ps", "-q", "--no-trunc", "--filter",
                           f"label=com.docker.swarm.service.name={swarm.STACK}_{service}").stdout.split()

    def inspect(self, container: str) -> dict:
        return json.loads(self.docker("inspect", container).stdout)[0]

    def service_image(self, service: str) -> str:
        return self.docker("service", "inspect", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
                           f"{swarm.STACK}_{service}").stdout.strip()


@pytest.fixture(scope="session")
def stack() -> Stack:
    engine = swarm.Engine()
    if engine.pid() is None or not engine.answers():
        pytest.fail(f"no engine of `make swarm-up` answers on {engine.socket}: run `make swarm-up` first")
    services = engine.docker("service", "ls", "--format", "{{.Name}}").stdout.split()
    if f"{swarm.STACK}_web" not in services:
        pytest.fail(f"the stack {swarm.STACK} is not deployed: run `make swarm-up` first")
    pending = {n: s for n, s in swarm.service_status(engine).items() if s[0] != s[1]}
    if pending:
        pytest.fail(f"the stack has not converged: {pending} (running and healthy / desired)")
    return Stack(engine)
