"""The built-in dashboard at ``/``, driven in headless Chromium against a real app and Redis."""
from __future__ import annotations

import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from webapp import create_app
from webapp import shutdown

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-quic", "--hide-scrollbars"]


class Served:
    """An app served over real HTTP on a free loopback port, in a thread."""

    def __init__(self, app):
        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.thread.join(timeout=10)
        shutdown(self.app)


def chromium() -> str:
    path = shutil.which("chromium")
    assert path, "Debian's chromium is needed for the dashboard test: run `make setup`"
    return path


def render(url: str, tmp_path: Path, screenshot: Path | None = None) -> str:
    """The page's DOM after its scripts ran (and a screenshot when asked)."""
    profile = tmp_path / f"chromium-{len(list(tmp_path.iterdir()))}"
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=6000", "--window-size=1280,1000"]
    if screenshot is not None:
        subprocess.run([chromium(), *flags, f"--screenshot={screenshot}", url],
                       capture_output=True, timeout=90, check=True)
    done = subprocess.run([chromium(), *flags, "--dump-dom", url],
                          capture_output=True, text=True, timeout=90, check=True)
    return done.stdout


def text_of(dom: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</(div|span)>\s*(<p|</section|<span|</header)', dom, re.S)
    assert match, f"#{element_id} not in page"
    return re.sub(r"<[^>]+>", " ", match.group(1))


@pytest.fixture
def served(settings, zk_hosts, test_id):
    served = Served(create_app(settings.replace(zk_hosts=zk_hosts, zk_root=f"/t-{test_id}/aeroguard")))
    yield served
    served.close()


def test_dashboard_shows_readings_markers_votes_and_anomalies(served, tmp_path):
    client = served.app.test_client()
    for value in (20.0, 20.3, 20.1, 20.4, 20.2, 260.0, 20.3, 20.1):
        client.get(f"/detectar?dato={value}&sensor=boiler-1")
    client.get("/nuevo?dato=5&sensor=tank")
    shot = ROOT / "out" / "dashboard.png"  # kept for people to look at (out/ is not tracked)
    shot.parent.mkdir(parents=True, exist_ok=True)
    dom = render(f"{served.url}/", tmp_path, screenshot=shot)
    assert 'data-loaded="true"' in dom
    assert re.search(r'<option value="boiler-1"[^>]*>boiler-1</option>', dom) and 'value="tank"' in dom
    assert 'id="series"' in dom
    assert len(re.findall(r'class="marker (warning|critical)"', dom)) == 1
    detectors = text_of(dom, "detectors")
    assert "physical" in detectors and "normal" in detectors
    anomalies = text_of(dom, "anomalies")
    assert "boiler-1" in anomalies and "260.0" in anomalies
    assert "no incidents recorded" in text_of(dom, "incidents")  # one warning is not an incident
    assert "no edge groups registered" in text_of(dom, "cluster")
    assert shot.stat().st_size > 10_000


def test_dashboard_says_which_dependency_is_down(settings, make_redis_server, tmp_path):
    server = make_redis_server()
    served = Served(create_app(settings.replace(redis_url=server.url, redis_socket_timeout_s=0.3)))
    try:
        served.app.test_client().get("/detectar?dato=20&sensor=boiler-1")
        dom = render(f"{served.url}/", tmp_path)
        assert "ZooKeeper" in text_of(dom, "cluster") and "unavailable" in text_of(dom, "cluster")
        assert "physical" in text_of(dom, "detectors")
        server.stop()
        dom = render(f"{served.url}/", tmp_path)
        assert "down: redis" in text_of(dom, "health")
        assert "unavailable" in text_of(dom, "chart")
        assert "unavailable" in text_of(dom, "cluster")
    finally:
        served.close()


def test_dashboard_lists_an_incident_with_its_peak_and_detectors(settings, tmp_path):
    served = Served(create_app(settings.replace(window_size=4, vote_required=1)))
    try:
        client = served.app.test_client()
        for value in (20.0, 20.1, 20.0, 20.1, 400.0, 900.0):
            client.get(f"/detectar?dato={value}&sensor=oven")
        incidents = text_of(render(f"{served.url}/", tmp_path), "incidents")
        assert "oven" in incidents and "open" in incidents and "900.0" in incidents and "physical" in incidents
    finally:
        served.close()
