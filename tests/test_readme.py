"""Every curl example in README.md works verbatim against a real local stack.

The only change made to a command is the port (the test's stack runs on free ports) and
``--fail-with-body -sS`` after ``curl``, so a 4xx/5xx answer fails the test.
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from scripts.servers import free_ports
from scripts.stack import StackConfig
from scripts.stack import start_services
from scripts.stack import stop_services

ROOT = Path(__file__).resolve().parents[1]
README_PORT = "127.0.0.1:8000"


def readme_curls() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.startswith("curl ")]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    ports = free_ports(11)
    config = StackConfig(state_dir=tmp_path_factory.mktemp("stack"), zk_ports=tuple(ports[0:3]),
                         zk_peer_ports=tuple(ports[3:6]), zk_election_ports=tuple(ports[6:9]),
                         redis_port=ports[9], web_port=ports[10])
    config.log_dir.mkdir(parents=True)
    services, exports = start_services(config)
    yield exports
    stop_services(services)


def test_readme_has_curl_examples_for_the_main_endpoints():
    joined = "\n".join(readme_curls())
    for path in ("/nuevo", "/listar", "/detectar", "/api/v1/readings", "/api/v1/anomalies"):
        assert path in joined


@pytest.mark.slow
def test_every_readme_curl_works(stack):
    assert shutil.which("curl"), "curl is needed to check README's examples"
    port = stack["WEB_URL"].rsplit(":", 1)[1]
    for line in readme_curls():
        command = line.replace(README_PORT, f"127.0.0.1:{port}").replace("curl ", "curl --fail-with-body -sS ", 1)
        done = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
        assert done.stdout.strip(), line
