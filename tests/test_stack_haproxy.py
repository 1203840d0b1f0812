"""Security of the Swarm stack, HAProxy: haproxy/haproxy.cfg with Debian's haproxy binary
(``-c``, then serving TLS in front of a stand-in web task), and the haproxy image's Dockerfile.
The static checks of docker-stack.yml are in tests/test_stack_security.py.
"""
from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from harness.process import ServerProcess
from harness.process import free_ports
from harness.process import stop_pid
from harness.process import wait_until
from tests.deploy_files import start_logged

ROOT = Path(__file__).resolve().parents[1]
STACK_FILE = ROOT / "docker-stack.yml"
HAPROXY_CFG = ROOT / "haproxy/haproxy.cfg"


def _haproxy() -> str:
    found = shutil.which("haproxy") or (Path("/usr/sbin/haproxy").is_file() and "/usr/sbin/haproxy")
    if not found:
        pytest.fail("haproxy not found: run `make setup` (installs Debian's haproxy package)", pytrace=False)
    return found


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost, and its key in a separate file (as the secrets)."""
    cert, key = tmp_path / "aeroguard.pem", tmp_path / "aeroguard.pem.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def _local_haproxy_cfg(tmp_path: Path, cert: Path, ports: dict[str, int], web_port: int | None = None) -> Path:
    """haproxy.cfg with only addresses changed: loopback ports, the test certificate, and (to
    serve a request) the web tasks' DNS template replaced by one stand-in task."""
    text = HAPROXY_CFG.read_text(encoding="utf-8")
    replacements = {
        "/run/secrets/aeroguard.pem": str(cert),
        "bind :8443 ": f"bind 127.0.0.1:{ports['api']} ",
        "bind :3000 ": f"bind 127.0.0.1:{ports['grafana']} ",
        "bind 127.0.0.1:8404": f"bind 127.0.0.1:{ports['health']}",
    }
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    if web_port is not None:
        template = re.search(r"^(\s*)server-template web .*$", text, re.MULTILINE)
        text = text.replace(template.group(0), f"{template.group(1)}server web1 127.0.0.1:{web_port} check")
    path = tmp_path / "haproxy.cfg"
    path.write_text(text, encoding="utf-8")
    return path


def test_haproxy_config_passes_haproxy_check(tmp_path):
    cert, _ = _certificate(tmp_path)
    cfg = _local_haproxy_cfg(tmp_path, cert, {"api": 8443, "grafana": 3000, "health": 8404})
    result = subprocess.run([_haproxy(), "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning" not in (result.stdout + result.stderr).lower(), result.stdout + result.stderr

    # The key comes from the second secret: without it the certificate cannot load.
    (tmp_path / "aeroguard.pem.key").unlink()
    missing = subprocess.run([_haproxy(), "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0


class _EchoHandler(http.server.BaseHTTPRequestHandler):
    """A stand-in web task: answers every GET with the headers it received."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        body = json.dumps({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_haproxy_terminates_tls_in_front_of_the_web_tier(tmp_path):
    cert, _ = _certificate(tmp_path)
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    api, grafana, health = free_ports(3)
    cfg = _local_haproxy_cfg(tmp_path, cert, {"api": api, "grafana": grafana, "health": health},
                             web_port=web.server_address[1])
    process = start_logged([_haproxy(), "-W", "-db", "-f", str(cfg)], dict(os.environ), tmp_path / "haproxy.log")
    try:
        context = ssl.create_default_context(cafile=str(cert))
        url = f"https://localhost:{api}/api/v1/health?x=1"

        def answered():
            try:
                with urllib.request.urlopen(url, context=context, timeout=2) as answer:
                    return answer.status, json.loads(answer.read()), {k.lower(): v for k, v in answer.headers.items()}
            except (urllib.error.URLError, ConnectionError):
                return None

        status, echoed, headers = wait_until(answered, 20, "HAProxy to serve over TLS")
        assert status == 200 and echoed["path"] == "/api/v1/health?x=1"
        assert echoed["headers"]["x-forwarded-proto"] == "https"
        assert echoed["headers"]["x-forwarded-for"] == "127.0.0.1"
        assert "max-age=" in headers["strict-transport-security"]

        # Plain HTTP on the TLS port gets no answer from the web tier: keys never cross in clear.
        with socket.create_connection(("127.0.0.1", api), timeout=5) as plain:
            plain.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-API-Key: k\r\n\r\n")
            reply = plain.recv(4096)
        assert b"/api/v1/health" not in reply and not reply.startswith(b"HTTP/1.1 200")

        # The stack's healthcheck line, aimed at this HAProxy's health port, passes.
        stack = yaml.safe_load(STACK_FILE.read_text(encoding="utf-8"))
        kind, *argv = stack["services"]["haproxy"]["healthcheck"]["test"]
        assert kind == "CMD" and argv[:2] == ["bash", "-c"]
        line = argv[2].replace("127.0.0.1/8404", f"127.0.0.1/{health}")
        assert line != argv[2]
        assert subprocess.run(["bash", "-c", line], timeout=20).returncode == 0
    finally:
        stop_pid(process.pid)
        process.wait(timeout=10)
        web.shutdown()
        web.server_close()


def test_a_refused_post_through_haproxy_over_http2_gets_its_401_not_a_reset_stream(tmp_path, redis_server, test_id):
    """The README's unkeyed ``curl -X POST`` through HAProxy over HTTP/2, with a large body: the
    web tier (gunicorn, webapp/gunicorn_conf.py) used to answer 401 before reading the body, and
    HAProxy then reset about 1 stream in 30 (curl: ``(92) ... PROTOCOL_ERROR``)."""
    cert, _ = _certificate(tmp_path)
    web_port, api, grafana, health = free_ports(4)
    env = dict(os.environ, AEROGUARD_ENV="local", REDIS_URL=redis_server.url, AEROGUARD_KEY_PREFIX=f"t:{test_id}:",
               API_KEYS="the-key", GUNICORN_BIND=f"127.0.0.1:{web_port}", WEB_CONCURRENCY="1",
               PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"))
    for name in ("GUNICORN_THREADS", "GUNICORN_WORKER_CLASS", "STORAGE_SLOTS", "ZK_HOSTS", "API_KEYS_FILE"):
        env.pop(name, None)
    web = ServerProcess("web", [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "webapp" / "gunicorn_conf.py"),
                                "webapp:create_app()"], tmp_path / "web.log", env=env, cwd=ROOT)
    web.start()
    cfg = _local_haproxy_cfg(tmp_path, cert, {"api": api, "grafana": grafana, "health": health}, web_port=web_port)
    proxy = start_logged([_haproxy(), "-W", "-db", "-f", str(cfg)], dict(os.environ), tmp_path / "haproxy.log")
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"group": "demo", "pad": "x" * 250_000}), encoding="utf-8")  # under MAX_BODY_BYTES
    curl = ["curl", "-sS", "--http2", "--cacert", str(cert), "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
            "-H", "Content-Type: application/json", "--data-binary", f"@{body}",
            f"https://localhost:{api}/api/v1/readings"]
    try:
        def up() -> bool:
            web.check_running()
            return subprocess.run(curl, capture_output=True, text=True, timeout=30).stdout == "401"
        wait_until(up, 120, "the web tier to answer through HAProxy", interval=0.5)
        answers = [subprocess.run(curl, capture_output=True, text=True, timeout=30) for _ in range(150)]
    finally:
        stop_pid(proxy.pid)
        proxy.wait(timeout=10)
        web.stop()
    failed = [(a.stdout, a.stderr.strip()) for a in answers if a.returncode != 0 or a.stdout != "401"]
    assert not failed, f"{len(failed)} of {len(answers)} refused POSTs did not get their 401: {failed[:3]}"


def test_haproxy_image_is_debians_haproxy_run_as_a_non_root_user():
    lines = [line.strip() for line in (ROOT / "haproxy/Dockerfile").read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    text = " ".join(lines)
    (base,) = [line.split()[1] for line in lines if line.startswith("FROM ")]
    # FROM ${BASE_IMAGE}: the ARG's default is the image a plain `docker build` uses.
    args = dict(line.split()[1].split("=", 1) for line in lines if line.startswith("ARG ") and "=" in line)
    base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
    # The same Debian release as the haproxy the tests above ran (Debian 12: 2.6).
    assert re.fullmatch(r"debian:bookworm-\d{8}-slim|debian:12\.\d+-slim", base), base
    assert re.search(r"apt-get install -y --no-install-recommends haproxy\b", text)
    user = [line.split()[1] for line in lines if line.startswith("USER ")][-1]
    assert user.split(":")[0] not in {"root", "0", "haproxy"}, "a fixed numeric uid, not root"
