"""Authentication fails closed: start-up refusal, scoped ingest keys, admin keys, rotation, ZooKeeper ACLs.

Against the real app, Redis and ZooKeeper ensemble. A refused request (401/403) changes
nothing in Redis or ZooKeeper.
"""
from __future__ import annotations

import json
import logging
import threading
import time

import pytest
import requests
from kazoo.exceptions import NoAuthError
from werkzeug.serving import make_server

from conftest import make_kazoo_client
from conftest import snapshot
from edge.__main__ import make_client
from edge.config import EdgeSettings
from edge.events import EventLog
from edge.node import EdgeNode
from edge.sources import build_source
from harness.process import free_port
from harness.process import wait_until
from webapp import create_app
from webapp import shutdown
from webapp.config import Settings

ZK_AUTH = "aeroguard:zk-s3cret"
NOW_MS = time.time_ns() // 1_000_000


def aggregate(group: str, round_: int = 1) -> dict:
    return {"group": group, "epoch": 1, "round": round_, "timestamp": NOW_MS, "value": 20.0,
            "readings": [{"node_id": "n1", "value": 20.0, "measured_at": NOW_MS}], "excluded": []}


def post(client, body, key: str | None = None):
    return client.post("/api/v1/readings", json=body, headers={"X-API-Key": key} if key else {})


# --- start-up ----------------------------------------------------------------------------------

@pytest.fixture
def production_env(monkeypatch, redis_server, redis_prefix):
    """The process environment of a production web replica, without any key yet."""
    for name in ("API_KEYS", "API_KEYS_FILE", "ADMIN_KEYS", "ADMIN_KEYS_FILE", "ZK_AUTH", "ZK_AUTH_FILE",
                 "ZK_HOSTS", "REDIS_SENTINELS", "ALERT_URLS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AEROGUARD_ENV", "production")
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("AEROGUARD_KEY_PREFIX", redis_prefix)
    return monkeypatch


def test_production_refuses_to_start_with_a_keys_file_of_blank_lines(production_env, tmp_path):
    blank = tmp_path / "api_keys"
    blank.write_text("\n  \n\n", encoding="utf-8")
    production_env.setenv("API_KEYS_FILE", str(blank))
    with pytest.raises(ValueError, match="no ingest key"):
        create_app()
    production_env.delenv("API_KEYS_FILE")
    with pytest.raises(ValueError, match="no ingest key"):
        create_app()


def test_production_refuses_zookeeper_without_credentials_and_an_admin_key_that_ingests(production_env, zk_hosts):
    production_env.setenv("API_KEYS", "ingest-1")
    production_env.setenv("ZK_HOSTS", zk_hosts)
    with pytest.raises(ValueError, match="ZK_AUTH"):
        create_app()
    production_env.setenv("ZK_AUTH", ZK_AUTH)
    production_env.setenv("ADMIN_KEYS", "ingest-1")
    with pytest.raises(ValueError, match="also an ingest key"):
        create_app()
    production_env.setenv("ADMIN_KEYS", "admin-1")
    app = create_app()
    try:
        assert app.extensions["settings"].web.env == "production"
        assert post(app.test_client(), aggregate("g1")).status_code == 401
    finally:
        shutdown(app)


def test_local_demo_stays_open_with_its_warning(settings, caplog):
    caplog.set_level(logging.WARNING, logger="webapp")
    app = create_app(settings.replace(env="local"))
    try:
        assert app.test_client().get("/nuevo?dato=1&sensor=demo").status_code == 201
        assert "ingest endpoints are open" in caplog.text
    finally:
        shutdown(app)


def test_an_unknown_environment_stops_startup():
    with pytest.raises(ValueError, match="AEROGUARD_ENV"):
        Settings.from_env({"AEROGUARD_ENV": "prod"})


def test_keys_never_appear_in_the_settings_repr(tmp_path):
    zk_file = tmp_path / "zk_auth"
    zk_file.write_text(ZK_AUTH + "\n", encoding="utf-8")
    web = Settings.from_env({"API_KEYS": "boiler-1 ingest-group-key, * ingest-any-key", "ADMIN_KEYS": "admin-key-x",
                             "ZK_AUTH_FILE": str(zk_file), "REDIS_PASSWORD": "redis-pw-x"})
    assert (web.auth.api_keys, dict(web.auth.group_keys), web.auth.admin_keys, web.cluster.zk_auth) == (
        ("ingest-any-key",), {"boiler-1": ("ingest-group-key",)}, ("admin-key-x",), ZK_AUTH)
    edge = EdgeSettings.from_args(["--group", "boiler-1", "--node-id", "n1", "--zk", "127.0.0.1:2181"],
                                  {"AEROGUARD_API_KEY": "ingest-group-key", "ZK_AUTH_FILE": str(zk_file)})
    assert (edge.api_key, edge.zk_auth) == ("ingest-group-key", ZK_AUTH)
    for secret in ("ingest-group-key", "ingest-any-key", "admin-key-x", "zk-s3cret", "redis-pw-x"):
        assert secret not in repr(web) and secret not in repr(edge)


@pytest.mark.parametrize("env", [
    {"API_KEYS": "g1 k1 extra"},
    {"API_KEYS": "bad/group k1"},
    {"ADMIN_KEYS": "two words"},
    {"ZK_AUTH": "no-password"},
    {"ZK_AUTH": ":pw"},
])
def test_malformed_keys_stop_startup_without_echoing_them(env):
    with pytest.raises(ValueError) as caught:
        Settings.from_env(env)
    assert "k1" not in str(caught.value) and "pw" not in str(caught.value)


# --- ingest keys per group, admin keys ---------------------------------------------------------

@pytest.fixture
def scoped_app(settings):
    app = create_app(settings.replace(api_keys=("any-group",), group_keys={"g-a": ("key-a",), "lab-a": ("key-lab",)},
                                      admin_keys=("admin",)))
    yield app
    shutdown(app)


def test_a_group_key_ingests_its_group_only(scoped_app, redis_client, redis_prefix):
    client = scoped_app.test_client()
    before = snapshot(redis_client, redis_prefix)
    assert post(client, aggregate("g-b"), "key-a").status_code == 403
    assert post(client, [aggregate("g-a"), aggregate("g-b")], "key-a").status_code == 403
    assert post(client, aggregate("g-a"), "admin").status_code == 403
    assert post(client, aggregate("g-a"), "wrong").status_code == 403
    assert post(client, aggregate("g-a")).status_code == 401
    assert client.get("/nuevo?dato=1&sensor=lab-a", headers={"X-API-Key": "key-a"}).status_code == 403
    assert client.get("/detectar?dato=1&sensor=lab-a", headers={"X-API-Key": "key-a"}).status_code == 403
    assert client.get("/nuevo?dato=1&sensor=lab-a", headers={"X-API-Key": "admin"}).status_code == 403
    assert client.get("/nuevo?dato=1&sensor=lab-a").status_code == 401
    assert snapshot(redis_client, redis_prefix) == before, "a refused request changed Redis"

    assert post(client, aggregate("g-a"), "key-a").status_code == 201
    assert post(client, aggregate("g-b"), "any-group").status_code == 201
    assert client.get("/nuevo?dato=1&sensor=lab-a", headers={"X-API-Key": "key-lab"}).status_code == 201
    assert client.get("/detectar?dato=2&sensor=lab-a", headers={"X-API-Key": "key-lab"}).status_code == 201
    assert client.get("/detectar?dato=2&sensor=other", headers={"X-API-Key": "any-group"}).status_code == 201
    assert [client.get(f"/listar?sensor={name}").json["count"] for name in ("g-a", "g-b", "lab-a")] == [1, 1, 2]


def test_only_an_admin_key_changes_the_config(settings, zk, zk_hosts):
    app = create_app(settings.replace(zk_hosts=zk_hosts + zk.chroot, api_keys=("any-group",),
                                      group_keys={"g-a": ("key-a",)}, admin_keys=("admin",)))
    try:
        wait_until(lambda: app.extensions["zk"].connected, 10, "the web tier's ZooKeeper client")
        client = app.test_client()
        doc = {"sampling_period_s": 2}
        for key in ("any-group", "key-a", "wrong"):
            assert client.put("/api/v1/config", json=doc, headers={"X-API-Key": key}).status_code == 403
            assert client.put("/api/v1/config?group=g-a", json=doc, headers={"X-API-Key": key}).status_code == 403
        assert client.put("/api/v1/config", json=doc).status_code == 401
        zk.sync("/")
        assert zk.exists("/aeroguard") is None, "a refused PUT wrote to ZooKeeper"
        assert client.put("/api/v1/config", json=doc, headers={"X-API-Key": "admin"}).status_code == 200
        zk.sync("/aeroguard")  # the app wrote through another session, maybe another server
        assert json.loads(zk.get("/aeroguard/config")[0]) == doc
    finally:
        shutdown(app)


# --- rotation ------------------------------------------------------------------------------------

def test_key_rotation_with_two_keys_live_at_once(settings, tmp_path, redis_client, redis_prefix):
    """docs/deploy.md's procedure: add key 2 (first line), roll the edges to it, remove key 1."""
    secret = tmp_path / "api_keys"

    def replica(lines: str):
        secret.write_text(lines, encoding="utf-8")
        keys = Settings.from_env({"API_KEYS_FILE": str(secret)})
        return create_app(settings.replace(api_keys=keys.auth.api_keys, group_keys=keys.auth.group_keys))

    apps = [replica("boiler-1 key-1\n"), replica("boiler-1 key-2\nboiler-1 key-1\n"), replica("boiler-1 key-2\n")]
    try:
        before, during, after = (app.test_client() for app in apps)
        assert post(before, aggregate("boiler-1", 1), "key-1").status_code == 201
        assert post(before, aggregate("boiler-1", 2), "key-2").status_code == 403
        assert post(during, aggregate("boiler-1", 3), "key-1").status_code == 201  # edges not yet rolled
        assert post(during, aggregate("boiler-1", 4), "key-2").status_code == 201  # edges rolled
        stored = snapshot(redis_client, redis_prefix)
        assert post(after, aggregate("boiler-1", 5), "key-1").status_code == 403
        assert snapshot(redis_client, redis_prefix) == stored
        assert post(after, aggregate("boiler-1", 6), "key-2").status_code == 201
    finally:
        for app in apps:
            shutdown(app)


# --- ZooKeeper digest ACLs -----------------------------------------------------------------------

@pytest.fixture
def guarded(zk, zk_hosts):
    """The chroot's hosts; after the test, the ACL-guarded /aeroguard is removed with the credentials
    (the `zk` fixture's open client could not)."""
    hosts = zk_hosts + zk.chroot
    yield hosts
    owner = make_kazoo_client(hosts)
    owner.start(timeout=15)
    try:
        owner.add_auth("digest", ZK_AUTH)
        owner.delete("/aeroguard", recursive=True)
    finally:
        owner.stop()
        owner.close()


@pytest.fixture
def served():
    made = []

    def serve(app) -> str:
        server = make_server("127.0.0.1", free_port(), app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        made.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}"

    yield serve
    for server, thread in made:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_edge_and_web_work_behind_digest_acls_that_lock_everyone_else_out(settings, guarded, served, tmp_path):
    app = create_app(settings.replace(zk_hosts=guarded, zk_auth=ZK_AUTH, group_keys={"g1": ("edge-key",)},
                                      admin_keys=("admin",)))
    url = served(app)
    nodes = []
    try:
        wait_until(lambda: app.extensions["zk"].connected, 10, "the web tier's ZooKeeper client")
        for node_id, source in (("n1", "const:20.0"), ("n2", "const:20.2")):
            edge = EdgeSettings(group="g1", node_id=node_id, zk_hosts=guarded, zk_auth=ZK_AUTH, session_timeout_s=2.0,
                                source=source, spool_dir=str(tmp_path / node_id), api_key="edge-key",
                                defaults={"sampling_period_s": 0.3, "api_urls": [url]})
            zk_client = make_client(edge)
            zk_client.start(timeout=10)
            nodes.append(EdgeNode(zk_client, edge, build_source(source), EventLog(None, node_id)))
            nodes[-1].start()

        def view():
            group = requests.get(f"{url}/api/v1/cluster", timeout=5).json()["groups"].get("g1", {})
            return group if len(group.get("live_nodes", [])) == 2 and group.get("last_round") else None

        group = wait_until(view, 15, "two live nodes and a round in the cluster view")
        assert group["leader"] in ("n1", "n2")
        wait_until(lambda: requests.get(f"{url}/listar?sensor=g1", timeout=5).json()["count"] > 0, 15,
                   "a round stored by the web tier")
        answer = requests.put(f"{url}/api/v1/config", json={"sampling_period_s": 0.2, "api_urls": [url]},
                              headers={"X-API-Key": "admin"}, timeout=5)
        assert answer.status_code == 200
        wait_until(lambda: all(n.hotconfig.current.sampling_period_s == 0.2 for n in nodes), 5,
                   "every node applied the new period")
        assert all(n.hotconfig.errors == 0 for n in nodes)

        _assert_locked_out(guarded, None)
        _assert_locked_out(guarded, "aeroguard:wrong-password")
    finally:
        for node in nodes:
            node.stop()
        shutdown(app)


def _assert_locked_out(hosts: str, credentials: str | None) -> None:
    stranger = make_kazoo_client(hosts)
    stranger.start(timeout=15)
    try:
        if credentials:
            stranger.add_auth("digest", credentials)  # ZooKeeper accepts any digest; the ACL decides
        stranger.sync("/")  # its server has applied the writes made through the app's session
        assert stranger.exists("/aeroguard/config") is not None  # existence is not protected by ACLs
        for attempt in (lambda: stranger.get("/aeroguard/config"),
                        lambda: stranger.set("/aeroguard/config", b'{"sampling_period_s": 0.001}'),
                        lambda: stranger.delete("/aeroguard/config"),
                        lambda: stranger.get_children("/aeroguard/groups"),
                        lambda: stranger.create("/aeroguard/groups/g1/config", b"{}"),
                        lambda: stranger.create("/aeroguard/rogue", b"")):
            with pytest.raises(NoAuthError):
                attempt()
    finally:
        stranger.stop()
        stranger.close()
