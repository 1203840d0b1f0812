"""EdgeSettings: command line over environment, validated once at startup."""
from __future__ import annotations

import subprocess
import sys

import pytest

from edge.config import EdgeSettings


def test_options_override_the_environment():
    env = {"EDGE_GROUP": "boiler-1", "ZK_HOSTS": "127.0.0.1:2181", "AEROGUARD_API_URLS": "http://a:8000, http://b:8000",
           "AEROGUARD_API_KEY": "k", "EDGE_PERIOD_S": "2"}
    settings = EdgeSettings.from_args(["--node-id", "n1", "--session-timeout", "4"], env)
    assert (settings.group, settings.node_id, settings.zk_hosts, settings.session_timeout_s) == \
        ("boiler-1", "n1", "127.0.0.1:2181", 4.0)
    assert settings.defaults == {"sampling_period_s": 2.0, "api_urls": ["http://a:8000", "http://b:8000"]}
    assert settings.api_key == "k"
    assert settings.spool_dir.endswith("boiler-1-n1")


@pytest.mark.parametrize("argv, message", [
    (["--group", "bad group", "--node-id", "n1", "--zk", "h:1"], "group"),
    (["--group", "g", "--node-id", "n/1", "--zk", "h:1"], "node_id"),
    (["--group", "g", "--node-id", "n1"], "zk_hosts"),
    (["--group", "g", "--node-id", "n1", "--zk", "h:1", "--session-timeout", "0.1"], "session_timeout_s"),
])
def test_bad_settings_stop_startup(argv, message):
    with pytest.raises(ValueError, match=message):
        EdgeSettings.from_args(argv, {})


def test_the_module_runs_and_documents_its_options():
    done = subprocess.run([sys.executable, "-m", "edge", "--help"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0
    assert "--group" in done.stdout and "--source" in done.stdout
