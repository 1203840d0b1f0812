"""``GET /api/v1/cluster`` and ``PUT /api/v1/config`` against real ZooKeeper, Redis and edge nodes.

The end-to-end test serves the real web tier (`create_app`) with werkzeug on a free port and
runs three in-process edge nodes delivering to it: aggregates are judged and stored, the
excluded node becomes a sensor-fault event, and a config PUT reaches every node live.
"""
from __future__ import annotations

import json
import threading

import pytest
import requests
from werkzeug.serving import make_server

from edge.__main__ import make_client
from edge.config import EdgeSettings
from edge.events import EventLog
from edge.node import EdgeNode
from edge.sources import build_source
from harness.process import free_port
from harness.process import wait_until
from webapp import create_app
from webapp.config import Settings

KEY = "test-key-1"


@pytest.fixture
def make_cluster_app(settings, zk, zk_hosts):
    made = []

    def make(**changes):
        app = create_app(settings.replace(zk_hosts=zk_hosts + zk.chroot, api_keys=(KEY,), admin_keys=(KEY,),
                                          **changes))
        made.append(app)
        wait_until(lambda: app.extensions["zk"].connected, 10, "the web tier's ZooKeeper client")
        return app

    yield make
    for app in made:
        app.extensions["zk"].stop()
        app.extensions["zk"].close()
        app.extensions["redis"].close()


@pytest.fixture
def cluster_app(make_cluster_app):
    return make_cluster_app()


@pytest.fixture
def edge_nodes(zk, zk_hosts, tmp_path):
    made: list[EdgeNode] = []

    def start(node_id: str, source: str, urls: list[str]) -> EdgeNode:
        settings = EdgeSettings(group="g1", node_id=node_id, zk_hosts=zk_hosts + zk.chroot, session_timeout_s=2.0,
                                source=source, spool_dir=str(tmp_path / f"spool-{node_id}"),
                                defaults={"sampling_period_s": 0.3, "api_urls": urls}, api_key=KEY,
                                event_log=str(tmp_path / f"{node_id}.events"))
        client = make_client(settings)
        client.start(timeout=10)
        node = EdgeNode(client, settings, build_source(source), EventLog(settings.event_log, node_id))
        node.start()
        made.append(node)
        return node

    yield start
    for node in made:
        node.stop()


class Served:
    """The app on a free loopback port in a thread (werkzeug's threaded server)."""

    def __init__(self, app) -> None:
        self.port = free_port()
        self.server = make_server("127.0.0.1", self.port, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def test_cluster_is_503_without_zookeeper(client):
    answer = client.get("/api/v1/cluster")
    assert answer.status_code == 503
    assert "ZooKeeper" in answer.json["error"] and answer.json["served_by"] == "test-replica"


def test_cluster_lists_groups_leader_epoch_and_live_nodes(cluster_app, edge_nodes):
    nodes = [edge_nodes(f"n{i}", "const:20", []) for i in (1, 2, 3)]
    client = cluster_app.test_client()

    def view():
        group = client.get("/api/v1/cluster").json["groups"].get("g1", {})
        return group if len(group.get("live_nodes", [])) == 3 and group.get("last_round") else None

    group = wait_until(view, 10, "three live nodes and a round in the cluster view")
    leader = next(n for n in nodes if n.epoch is not None)
    assert group["leader"] == leader.settings.node_id and group["epoch"] == leader.epoch
    assert {n["node_id"] for n in group["live_nodes"]} == {"n1", "n2", "n3"}
    assert all(isinstance(n["pid"], int) for n in group["live_nodes"])


def test_a_group_no_node_joined_has_no_leader_and_reading_it_creates_nothing(cluster_app, zk):
    """kazoo's `Election.contenders()` creates a missing election znode; the cluster view must not."""
    client = cluster_app.test_client()
    assert _put(client, {"fusion_k": 5}, group="g9").status_code == 200
    group = client.get("/api/v1/cluster").json["groups"]["g9"]
    assert group["leader"] is None and group["live_nodes"] == [] and group["queue_depth"] == 0
    assert group["config"] == {"fusion_k": 5}
    zk.sync("/aeroguard/groups/g9")
    assert zk.get_children("/aeroguard/groups/g9") == ["config"]


def test_put_config_requires_a_key_and_a_valid_document(cluster_app, zk):
    client = cluster_app.test_client()
    good = {"sampling_period_s": 2, "api_urls": ["http://127.0.0.1:8000"]}
    assert client.put("/api/v1/config", json=good).status_code == 401
    assert client.put("/api/v1/config", json=good, headers={"X-API-Key": "nope"}).status_code == 403
    for bad in ({"sampling_period_s": 0}, {"colour": 1}, [1]):
        answer = client.put("/api/v1/config", json=bad, headers={"X-API-Key": KEY})
        assert answer.status_code == 400, bad
    assert zk.exists("/aeroguard/config") is None
    answer = client.put("/api/v1/config", json=good, headers={"X-API-Key": KEY})
    assert answer.status_code == 200 and answer.json["config"] == good
    zk.sync("/aeroguard/config")  # the app wrote through its own session, maybe to another server
    assert json.loads(zk.get("/aeroguard/config")[0]) == good
    answer = client.put("/api/v1/config?group=g1", json={"fusion_k": 5}, headers={"X-API-Key": KEY})
    assert answer.status_code == 200
    zk.sync("/aeroguard/groups/g1/config")
    assert json.loads(zk.get("/aeroguard/groups/g1/config")[0]) == {"fusion_k": 5}
    assert client.put("/api/v1/config?group=bad%20group", json={}, headers={"X-API-Key": KEY}).status_code == 400
    assert client.get("/api/v1/cluster").json["config"] == good


def _put(client, doc, group=None):
    url = "/api/v1/config" + (f"?group={group}" if group else "")
    return client.put(url, json=doc, headers={"X-API-Key": KEY})


def _znode(zk, path):
    """The data and version of `path`, None if absent: what a refused write must leave alone."""
    if zk.exists(path) is None:
        return None
    data, stat = zk.get(path)
    return data, stat.version


def test_put_config_judges_the_config_every_node_will_merge(cluster_app, zk):
    """The web tier refuses what the edge would reject once merged, and changes nothing then."""
    client = cluster_app.test_client()
    answer = _put(client, {"round_timeout_s": 5})  # the default period is 1 s
    assert answer.status_code == 400 and "round_timeout_s must not exceed sampling_period_s" in answer.json["error"]
    assert zk.exists("/aeroguard/config") is None
    assert _put(client, {"sampling_period_s": 2, "round_timeout_s": 1.5}).status_code == 200
    zk.sync("/aeroguard/config")  # written through the app's session, maybe on another server
    cluster_before = _znode(zk, "/aeroguard/config")

    answer = _put(client, {"sampling_period_s": 1}, group="g1")  # 1.5 s rounds from the cluster config
    assert answer.status_code == 400 and "/aeroguard/config" in answer.json["error"]
    assert zk.exists("/aeroguard/groups/g1/config") is None
    assert _put(client, {"sampling_period_s": 1, "round_timeout_s": 0.5}, group="g1").status_code == 200
    zk.sync("/aeroguard/groups/g1/config")
    group_before = _znode(zk, "/aeroguard/groups/g1/config")

    answer = _put(client, {"sampling_period_s": 2, "http_timeout_s": 1.5})  # g1's 1 s period: 1.5 >= 1
    assert answer.status_code == 400 and "/aeroguard/groups/g1/config" in answer.json["error"]
    assert (_znode(zk, "/aeroguard/config"), _znode(zk, "/aeroguard/groups/g1/config")) == (cluster_before,
                                                                                             group_before)
    assert _put(client, {"sampling_period_s": 2, "http_timeout_s": 0.5}).status_code == 200


@pytest.mark.parametrize("doc, why", [
    ({"sampling_period_s": 0.001}, "sampling_period_s must be a number in [0.1, 3600]"),
    ({"api_urls": ["http://user:secret@127.0.0.1:8000"]}, "must not carry user info"),
    ({"api_urls": ["http://:8000"]}, "with a host"),
])
def test_put_config_refuses_a_tiny_period_and_bad_urls(cluster_app, zk, doc, why):
    answer = _put(cluster_app.test_client(), doc)
    assert answer.status_code == 400 and why in answer.json["error"]
    assert zk.exists("/aeroguard/config") is None


def test_put_config_keeps_api_urls_to_the_allowed_hosts(make_cluster_app, zk):
    client = make_cluster_app(config_url_hosts=("127.0.0.1", "web")).test_client()
    answer = _put(client, {"api_urls": ["http://web:8000", "http://10.9.8.7:8000"]})
    assert answer.status_code == 400 and "10.9.8.7" in answer.json["error"]
    assert zk.exists("/aeroguard/config") is None
    assert _put(client, {"api_urls": ["http://WEB:8000", "https://127.0.0.1/"]}).status_code == 200


def test_config_url_hosts_is_read_from_the_environment():
    assert Settings.from_env({"CONFIG_URL_HOSTS": " web , 127.0.0.1,"}).cluster.config_url_hosts == ("web", "127.0.0.1")
    assert Settings.from_env({}).cluster.config_url_hosts == ()


def test_an_aggregate_the_contract_refuses_is_kept_and_shown_in_the_cluster_view(cluster_app, edge_nodes):
    """A sensor reading 2e9: the leader's aggregate is refused by the edge itself, kept and reported."""
    served = Served(cluster_app)
    try:
        node = edge_nodes("n1", "const:2e9", [served.url])
        client = cluster_app.test_client()

        def reported():
            nodes = client.get("/api/v1/cluster").json["groups"].get("g1", {}).get("live_nodes", [])
            info = next((n for n in nodes if n.get("node_id") == "n1"), {})
            return info if info.get("refused_kept") and info.get("delivery", {}).get("refused") else None

        info = wait_until(reported, 15, "refused aggregates in the cluster view")
        assert info["delivery"].get("stored", 0) == 0
        kept = node.delivery.refused.oldest(1)[0][1]
        assert kept["refused_by"] == "edge" and "value must be within" in kept["error"]
        assert kept["aggregate"]["group"] == "g1" and kept["aggregate"]["value"] == 2e9
        assert requests.get(f"{served.url}/listar?sensor=g1", timeout=5).json()["readings"] == []
    finally:
        served.close()


def test_end_to_end_edge_to_web_tier(cluster_app, edge_nodes):
    served = Served(cluster_app)
    try:
        nodes = [edge_nodes("n1", "const:20.0", [served.url]), edge_nodes("n2", "const:20.2", [served.url]),
                 edge_nodes("n3", "const:95.0", [served.url])]

        def stored():
            return requests.get(f"{served.url}/listar?sensor=g1", timeout=5).json()["readings"]

        def faults():
            return requests.get(f"{served.url}/api/v1/anomalies?kind=sensor_fault", timeout=5).json()["events"]

        # The first rounds may close before n3 has joined; wait for one it answered in.
        wait_until(lambda: "n3" in json.dumps(faults()), 20, "n3 reported as a sensor fault")
        wait_until(lambda: any(r["value"] == pytest.approx(20.1) for r in stored()), 20,
                   "a fused round stored by the web tier")
        answer = requests.put(f"{served.url}/api/v1/config", json={"sampling_period_s": 0.2, "api_urls": [served.url]},
                              headers={"X-API-Key": KEY}, timeout=5)
        assert answer.status_code == 200
        wait_until(lambda: all(n.hotconfig.current.sampling_period_s == 0.2 for n in nodes), 10,
                   "every node applied the new period")
        leader = next(n for n in nodes if n.epoch is not None)
        # Delivered, none refused. An attempt that timed out (a slow answer) is retried, not lost:
        # the retry is answered 200 (a duplicate) when the first one was stored after all.
        wait_until(lambda: leader.delivery.backlog() == 0, 10, "the leader's backlog delivered")
        counts = leader.delivery.counts
        assert counts["stored"] + counts["duplicate"] > 0 and counts["refused"] == 0
    finally:
        served.close()
