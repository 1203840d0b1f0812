"""Hostile clients and storage hiccups (issue 10, findings 1–5 and 9), against real Redis and
ZooKeeper: a made-up epoch cannot stop a group, plain readings and edge groups keep to their
own series, new sensors are bounded, a full Redis answers 503 with nothing half-written,
every write is safe to retry, and a reading stored without a verdict gets one on its retry.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
import redis

from conftest import snapshot
from harness.process import wait_until
from harness.redis_server import RedisOptions
from webapp import create_app
from webapp import shutdown
from webapp.storage import Store

TOPOLOGIES = ("single", "cluster")  # tests here run on one Redis and on the Redis Cluster, but those
# that stop, fill or pause a server of their own (single_redis)
POISON = 4611686018427387904  # 2**62: the epoch of the reported attack


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def aggregate(**changes) -> dict:
    body = {"group": "boiler-1", "epoch": 5, "round": 1, "timestamp": now_ms(), "value": 71.5,
            "readings": [{"node_id": "n1", "value": 71.4}], "excluded": []}
    body.update(changes)
    return body


def post(client, body, **headers):
    return client.post("/api/v1/readings", data=json.dumps(body), content_type="application/json",
                       headers=headers)


def publish_epoch(zk, group: str, epoch: int) -> None:
    """What a new leader does before its first round: publish its epoch in ZooKeeper."""
    path = f"/aeroguard/groups/{group}/epoch"
    zk.ensure_path(path)
    zk.set(path, json.dumps({"epoch": epoch, "leader": "n1"}).encode())


@pytest.fixture
def zk_app(settings, zk_hosts, test_id, zk):
    """The web tier with ZooKeeper (the test's chroot) in its `env`; `zk` sees the same tree."""
    app = create_app(settings.replace(zk_hosts=zk_hosts, zk_root=f"/t-{test_id}/aeroguard"))
    wait_until(lambda: app.extensions["zk"].connected, 15, "web tier connected to ZooKeeper")
    yield app
    shutdown(app)


# --- 1. epoch poisoning --------------------------------------------------------------------

def test_an_epoch_no_election_issued_cannot_move_the_fence(zk_app, zk, redis_client, settings):
    client = zk_app.test_client()
    publish_epoch(zk, "boiler-1", 5)
    assert post(client, aggregate(epoch=5, round=1)).status_code == 201
    before = snapshot(redis_client, settings.storage.key_prefix)

    attack = post(client, aggregate(epoch=POISON, round=2))

    assert attack.status_code == 403
    assert "not issued by its election" in attack.json["error"] and attack.json["issued_epoch"] == 5
    assert snapshot(redis_client, settings.storage.key_prefix) == before
    assert post(client, aggregate(epoch=5, round=2)).status_code == 201  # the real leader goes on
    publish_epoch(zk, "boiler-1", 6)  # a new election: the next leader is admitted at once
    assert post(client, aggregate(epoch=6, round=3)).status_code == 201
    assert post(client, aggregate(epoch=5, round=4)).status_code == 409
    assert zk_app.extensions["store"].group_state("boiler-1")["epoch"] == 6


def test_a_group_zookeeper_knows_but_whose_leader_has_not_published_admits_no_epoch(zk_app, zk):
    zk.ensure_path("/aeroguard/groups/boiler-1/epoch")  # created empty by the first node
    assert post(zk_app.test_client(), aggregate(epoch=0)).status_code == 403


def test_in_production_an_unknown_group_or_a_missing_zookeeper_cannot_prove_an_epoch(settings, zk_hosts, test_id,
                                                                                      zk):
    strict = settings.replace(env="production", api_keys=("k",), admin_keys=("admin",), zk_auth="web:secret")
    app = create_app(strict.replace(zk_hosts=zk_hosts, zk_root=f"/t-{test_id}/aeroguard"))
    try:
        wait_until(lambda: app.extensions["zk"].connected, 15, "web tier connected to ZooKeeper")
        assert post(app.test_client(), aggregate(group="nobody"), **{"X-API-Key": "k"}).status_code == 403
    finally:
        shutdown(app)
    app = create_app(strict)
    try:
        assert post(app.test_client(), aggregate(), **{"X-API-Key": "k"}).status_code == 503
    finally:
        shutdown(app)


# --- 3. separate namespaces ------------------------------------------------------------------

def test_plain_readings_and_an_edge_group_cannot_share_a_series(client, redis_client, settings):
    assert post(client, aggregate(group="boiler-1")).status_code == 201
    before = snapshot(redis_client, settings.storage.key_prefix)
    refused = client.get("/nuevo?dato=999&sensor=boiler-1")
    assert refused.status_code == 403 and "edge group" in refused.json["error"]
    assert client.get("/detectar?dato=999&sensor=boiler-1").status_code == 403
    assert snapshot(redis_client, settings.storage.key_prefix) == before

    assert client.get("/nuevo?dato=21&sensor=lab-1").status_code == 201
    before = snapshot(redis_client, settings.storage.key_prefix)
    taken = post(client, aggregate(group="lab-1"))
    assert taken.status_code == 403 and "plain readings" in taken.json["error"]
    assert snapshot(redis_client, settings.storage.key_prefix) == before


# --- 2. bounded Redis memory -----------------------------------------------------------------

def test_new_sensors_are_bounded_by_a_quota_and_nothing_is_written_past_it(settings, redis_client):
    # One key bucket: the quota is the whole of MAX_SENSORS (tests/test_cluster_keys.py: shares).
    app = create_app(settings.replace(max_sensors=3, key_buckets=1))
    client = app.test_client()
    try:
        for i in range(3):
            assert client.get(f"/nuevo?dato=1&sensor=s{i}").status_code == 201
        before = snapshot(redis_client, settings.storage.key_prefix)
        refused = client.get("/nuevo?dato=1&sensor=s3")
        assert refused.status_code == 403 and "MAX_SENSORS" in refused.json["error"]
        assert snapshot(redis_client, settings.storage.key_prefix) == before
        assert client.get("/nuevo?dato=2&sensor=s0").status_code == 201  # known sensors go on
        assert post(client, aggregate(group="g1", epoch=1)).status_code == 201  # groups are not counted
    finally:
        shutdown(app)


def test_an_idle_series_is_forgotten_with_every_key_it_has(client, app, redis_client, settings):
    for value in (20, 21, 22):
        assert client.get(f"/detectar?dato={value}&sensor=old").status_code == 201
    client.get("/nuevo?dato=1&sensor=live")
    store: Store = app.extensions["store"]
    old_keys = [k for k in redis_client.scan_iter(match=f"{settings.storage.key_prefix}*") if ":old:" in k]
    assert len(old_keys) >= 6  # readings, two compactions, scores, votes, verdict, level, write ids

    later = now_ms() + int(settings.retention.sensor_idle_days * 86_400_000) + 1000
    assert store.forget_idle("sensors", limit=1, now_ms=later) in (["old"], ["live"])
    assert sorted(store.forget_idle("sensors", limit=10, now_ms=later)) in (["old"], ["live"])

    assert [k for k in redis_client.scan_iter(match=f"{settings.storage.key_prefix}*") if ":old:" in k] == []
    assert client.get("/listar?sensor=old").json["count"] == 0


def test_a_recent_writer_keeps_its_series(client, app):
    client.get("/nuevo?dato=1&sensor=busy")
    assert app.extensions["store"].forget_idle("sensors", limit=10) == []
    assert client.get("/listar?sensor=busy").json["count"] == 1


@pytest.mark.single_redis
def test_a_full_redis_answers_503_and_nothing_is_half_written(settings, make_redis_server):
    server = make_redis_server(RedisOptions(extra_args=("--maxmemory-policy", "noeviction")))
    raw = redis.Redis.from_url(server.url, decode_responses=True)
    app = create_app(settings.replace(redis_url=server.url))
    client = app.test_client()
    try:
        assert client.get("/nuevo?dato=1&sensor=known").status_code == 201
        for _ in range(16):  # 1 MiB in small pieces: a 1 MiB query buffer, freed later by the
            raw.append("ballast", "x" * 65536)  # server's cron, would drop it back under the limit
        raw.config_set("maxmemory", raw.info("memory")["used_memory"] - 256 * 1024)  # now over the limit
        before = snapshot(raw, settings.storage.key_prefix)

        for path in ("/nuevo?dato=2&sensor=known", "/nuevo?dato=2&sensor=new", "/detectar?dato=2&sensor=new2"):
            full = client.get(path)
            assert full.status_code == 503, path
        assert post(client, aggregate(group="g-new")).status_code == 503
        assert snapshot(raw, settings.storage.key_prefix) == before

        raw.delete("ballast")
        assert client.get("/nuevo?dato=2&sensor=known").status_code == 201
    finally:
        shutdown(app)
        raw.close()


# --- 4. every write safe to retry --------------------------------------------------------------

def test_a_repeated_idempotency_key_stores_the_reading_once(client):
    first = client.get("/nuevo?dato=21.5&sensor=k", headers={"Idempotency-Key": "reading-1"})
    again = client.get("/nuevo?dato=21.5&sensor=k", headers={"Idempotency-Key": "reading-1"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json["duplicate"] is True and again.json["timestamp"] == first.json["timestamp"]
    judged = client.get("/detectar?dato=22&sensor=k", headers={"Idempotency-Key": "reading-2"})
    assert judged.status_code == 201
    assert client.get("/detectar?dato=22&sensor=k", headers={"Idempotency-Key": "reading-2"}).status_code == 200
    assert client.get("/listar?sensor=k").json["count"] == 2
    assert client.get("/nuevo?dato=1&sensor=k", headers={"Idempotency-Key": "a b"}).status_code == 400


@pytest.mark.single_redis
def test_every_acknowledged_reading_is_stored_once_across_redis_pauses(settings, make_redis_server):
    """Three writers retry 503s with the same key while Redis is paused (SIGSTOP) for 1, 3
    and 8 s: every reading ends acknowledged and stored exactly once."""
    server = make_redis_server()
    app = create_app(settings.replace(redis_url=server.url, redis_socket_timeout_s=0.3))
    raw = redis.Redis.from_url(server.url, decode_responses=True)
    per_writer, answers, done = 40, {}, threading.Event()

    def writer(name: str) -> None:
        client = app.test_client()
        for i in range(per_writer):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                answer = client.get(f"/nuevo?dato={i}&sensor={name}", headers={"Idempotency-Key": f"{name}-{i}"})
                if answer.status_code in (200, 201):
                    answers[(name, i)] = answer.json["timestamp"]
                    break
                assert answer.status_code == 503, answer.json
                time.sleep(0.05)
            time.sleep(0.05)
        done.set()

    threads = [threading.Thread(target=writer, args=(f"w{n}",)) for n in range(3)]
    try:
        for thread in threads:
            thread.start()
        for pause in (1, 3, 8):
            time.sleep(0.4)
            os.kill(server.pid, signal.SIGSTOP)
            try:
                time.sleep(pause)
            finally:
                os.kill(server.pid, signal.SIGCONT)
        for thread in threads:
            thread.join(120)
    finally:
        os.kill(server.pid, signal.SIGCONT)
        shutdown(app)

    assert len(answers) == 3 * per_writer  # every reading acknowledged in the end
    for n in range(3):
        samples = raw.ts().range(app.extensions["store"].keys.series(f"w{n}", "readings"), "-", "+")
        assert [v for _, v in samples] == [float(i) for i in range(per_writer)]  # once each, in order
        assert [t for t, _ in samples] == [answers[(f"w{n}", i)] for i in range(per_writer)]
    raw.close()


# --- 5. a reading without a verdict gets one --------------------------------------------------

def test_a_retry_of_a_stored_but_unjudged_round_judges_it(client, app):
    doc = aggregate(group="g5", epoch=2, round=7)
    store: Store = app.extensions["store"]
    stored = store.append_aggregate("g5", 2, 7, doc["timestamp"], doc["value"])  # the answer was lost here
    assert not store.is_judged("g5", stored.timestamp)

    retry = post(client, doc)

    assert retry.status_code == 200 and retry.json["status"] == "duplicate"
    assert store.is_judged("g5", stored.timestamp)
    assert post(client, doc).status_code == 200
    assert len(store.client.ts().range(store.keys.series("g5", "verdict"), "-", "+")) == 1


def test_a_deposed_leaders_retry_of_its_stored_round_is_judged_not_refused_as_stale(client, app):
    """Its first answer lost, the leader is deposed (a ZooKeeper fault) and the next leader
    stores rounds under a newer epoch; the old leader's spool then retries its stored round."""
    doc = aggregate(group="g6", epoch=2, round=7)
    store: Store = app.extensions["store"]
    stored = store.append_aggregate("g6", 2, 7, doc["timestamp"], doc["value"])  # the answer was lost here
    assert post(client, aggregate(group="g6", epoch=3, round=1, timestamp=doc["timestamp"] + 1000)).status_code == 201

    retry = post(client, doc)

    assert retry.status_code == 200 and retry.json["status"] == "duplicate"
    assert retry.json["timestamp"] == stored.timestamp
    assert store.is_judged("g6", stored.timestamp)
    assert post(client, aggregate(group="g6", epoch=2, round=8, timestamp=doc["timestamp"] + 2000)).status_code == 409
    assert [v for _, v in store.client.ts().range(store.keys.series("g6", "readings"), "-", "+")] == [doc["value"]] * 2


# --- 9. timestamps bounded by the retention and the stated clock skew -------------------------

@pytest.mark.parametrize("offset_ms, code", [(None, 400), (59_000, 400), (-4 * 86_400_000, 400),
                                             (3_000, 201), (-86_400_000, 201)])
def test_aggregate_timestamps_lie_within_the_retention_and_the_clock_skew(client, offset_ms, code):
    timestamp = 0 if offset_ms is None else now_ms() + offset_ms
    assert post(client, aggregate(timestamp=timestamp)).status_code == code


# --- 1, end to end: the attack against a running edge group ------------------------------------

def http(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as answer:
        return answer.code, json.loads(answer.read())


@pytest.mark.slow
def test_a_poisoned_epoch_leaves_a_running_group_storing_rounds(local_stack):
    web = local_stack["WEB_URL"]

    def stored() -> int:
        return http("GET", f"{web}/listar?sensor=boiler-1&count=10000")[1]["count"]

    def epoch() -> int | None:
        return http("GET", f"{web}/api/v1/cluster")[1].get("groups", {}).get("boiler-1", {}).get("epoch")

    wait_until(lambda: stored() >= 3 and epoch() is not None, 60, "boiler-1 storing rounds")
    leader_epoch, before = epoch(), stored()

    code, answer = http("POST", f"{web}/api/v1/readings", aggregate(epoch=POISON, round=10**9))

    assert code == 403, answer
    wait_until(lambda: stored() >= before + 5, 30, "boiler-1 still storing rounds after the attack")
    assert epoch() == leader_epoch  # no leader was fenced off, so nobody re-elected


def test_every_redis_the_project_starts_is_bounded_below_its_memory_limit():
    import yaml

    from harness.process import ROOT
    from harness.redis_topology import BOUNDED

    assert BOUNDED[BOUNDED.index("--maxmemory-policy") + 1] == "noeviction"
    conf = dict(line.split(None, 1) for line in (ROOT / "redis/redis.conf").read_text().splitlines()
                if line.strip() and not line.startswith("#") and not line.startswith("user "))
    assert conf["maxmemory-policy"].strip() == "noeviction"
    maxmemory_mb = int(conf["maxmemory"].strip().removesuffix("mb"))
    stack = yaml.safe_load((ROOT / "docker-stack.yml").read_text())
    limit = stack["services"]["redis-1"]["deploy"]["resources"]["limits"]["memory"]
    limit_mb = int(limit.removesuffix("G")) * 1024 if limit.endswith("G") else int(limit.removesuffix("M"))
    assert maxmemory_mb <= 0.75 * limit_mb  # room for replication and AOF rewrite buffers
