"""The key layout on one Redis and on a Redis Cluster (issue 14): every script's keys lie in one
hash slot, listings merge every key bucket across the cluster's shards, quotas are per-bucket
shares, and an error among a pipeline's replies is raised, never read as data."""
from __future__ import annotations

import threading
import time

import pytest
import redis
from redis.crc import key_slot

from harness.process import LOOPBACK
from harness.process import wait_until
from webapp import create_app
from webapp import make_redis
from webapp import shutdown
from webapp.config import Settings
from webapp.errors import QuotaReached
from webapp.errors import StoreUnavailable
from webapp.storage import Keys
from webapp.storage import Store
from webapp.storage.base import raise_first_error

TOPOLOGIES = ("single", "cluster")
SENSORS = [f"line-{n}" for n in range(12)]  # 12 names over 16 buckets: every shard gets some


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def spike(client, sensor: str) -> None:
    """A calm window then an excursion: a critical verdict, an event and an incident."""
    for value in (20.0, 20.1, 20.0, 20.1, 500.0):
        assert client.get(f"/detectar?dato={value}&sensor={sensor}").status_code == 201


class ScriptWatch:
    """Every ``EVAL``/``EVALSHA`` the session redis-server runs, read through ``MONITOR``."""

    def __init__(self, client) -> None:
        self.calls: list[list[str]] = []
        self._client = client
        self._stopping = threading.Event()
        self._monitor = client.monitor()
        self._monitor.__enter__()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for command in self._monitor.listen():
            if self._stopping.is_set():
                return
            words = command["command"].split(" ")  # quotes dropped by redis-py: JSON args split too, keys not
            if words and words[0].upper() in ("EVAL", "EVALSHA"):
                self.calls.append(words)

    def stop(self) -> None:
        self._stopping.set()
        self._client.ping()  # wakes the reader, which then returns
        self._thread.join(5)
        self._monitor.__exit__(None, None, None)


@pytest.mark.single_redis  # MONITOR shows every script one server runs; a cluster refuses CROSSSLOT by itself
def test_every_script_touches_one_hash_slot(settings, redis_client):
    """Readings, aggregates with an excluded node, decisions with events and incidents, a group's
    node incident and forgetting an idle series: every script call names keys of one slot."""
    app = create_app(settings.replace(window_size=4, vote_required=1))
    watch = ScriptWatch(redis_client)
    try:
        client = app.test_client()
        for sensor in SENSORS[:4]:
            spike(client, sensor)
        start = now_ms() - 30_000
        for rnd in range(1, 4):
            body = {"group": "kiln", "epoch": 1, "round": rnd, "timestamp": start + rnd * 1000, "value": 20.0,
                    "readings": [{"node_id": "n1", "value": 20.0}, {"node_id": "n2", "value": 20.1},
                                 {"node_id": "n3", "value": 90.0}],
                    "excluded": [{"node_id": "n3", "value": 90.0, "reason": "beyond 3.5 MAD"}]}
            assert client.post("/api/v1/readings", json=body).status_code == 201
        later = now_ms() + int(settings.retention.sensor_idle_days * 86_400_000) + 1000
        assert app.extensions["store"].forget_idle("sensors", limit=1, now_ms=later)
        wait_until(lambda: any(call[0].upper() == "EVALSHA" and len(call) > 3 and "registry" in call[3]
                               for call in watch.calls), 10, "the forget script seen by MONITOR")
    finally:
        watch.stop()
        shutdown(app)
    prefixed = [call for call in watch.calls if settings.storage.key_prefix in " ".join(call)]
    assert len(prefixed) >= 20
    for call in prefixed:
        keys = call[3:3 + int(call[2])]
        assert len({key_slot(key.encode()) for key in keys}) == 1, f"keys of two slots in one script: {keys}"


@pytest.fixture
def app(settings):
    """Critical at one vote and a 4-reading window, so a short excursion makes an incident."""
    app = create_app(settings.replace(window_size=4, vote_required=1))
    yield app
    shutdown(app)


def test_listings_merge_every_bucket_across_shards(app, client, redis_client, topology):
    keys = app.extensions["store"].keys
    buckets = {keys.bucket(sensor) for sensor in SENSORS}
    assert len(buckets) >= 6
    if topology == "cluster":  # the names really lie on several shards
        shards = {redis_client.get_node_from_key(keys.series(sensor, "readings")).name for sensor in SENSORS}
        assert len(shards) == 3
    for sensor in SENSORS:
        spike(client, sensor)

    pages, after = [], None
    while True:
        answer = client.get("/api/v1/sensors?count=5" + (f"&after={after}" if after else "")).json
        pages.append([s["sensor"] for s in answer["sensors"]])
        assert all("verdict" in s and s["reading"]["value"] == 500.0 for s in answer["sensors"])
        after = answer.get("next_after")
        if after is None:
            break
    assert [len(page) for page in pages] == [5, 5, 2]
    assert [name for page in pages for name in page] == sorted(SENSORS)

    events = client.get("/api/v1/anomalies?count=100&kind=decision").json["events"]
    assert {e["sensor"] for e in events} == set(SENSORS)
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps, reverse=True)  # newest first across buckets
    assert len(client.get("/api/v1/anomalies?count=3").json["events"]) == 3

    incidents = client.get("/api/v1/incidents?count=100").json["incidents"]
    assert {i["sensor"] for i in incidents} == set(SENSORS) and all(i["state"] == "open" for i in incidents)
    assert len(client.get("/api/v1/incidents?count=4").json["incidents"]) == 4
    assert [i["subject"] for i in client.get(f"/api/v1/incidents?sensor={SENSORS[3]}").json["incidents"]] == \
        [SENSORS[3]]


def test_the_sensor_quota_is_a_share_per_bucket(settings, redis_client):
    """MAX_SENSORS=16 over 16 buckets: one sensor per bucket. A second name of a taken bucket is
    refused while other buckets still have room (the cost of keeping the check in one slot)."""
    keys = Keys(settings.storage.key_prefix, 16)
    first = "q-0"
    twin = next(f"q-{n}" for n in range(1, 500) if keys.bucket(f"q-{n}") == keys.bucket(first))
    other = next(f"q-{n}" for n in range(1, 500) if keys.bucket(f"q-{n}") != keys.bucket(first))
    store = Store(redis_client, settings.replace(max_sensors=16, key_buckets=16))
    assert store.append_reading(first, 1_000, 1.0).status == "stored"
    with pytest.raises(QuotaReached, match="MAX_SENSORS"):
        store.append_reading(twin, 1_000, 1.0)
    assert store.append_reading(other, 1_000, 1.0).status == "stored"


def test_an_error_among_pipeline_replies_is_raised_not_read_as_data(settings, redis_client):
    """A reply that is an error (here WRONGTYPE, as CLUSTERDOWN would be in a failover) in the
    judging read's pipeline is a `StoreUnavailable`, not a window made of an error."""
    store = Store(redis_client, settings)
    store.append_reading("typed", 1_000, 1.0)
    redis_client.set(store.keys.series("typed", "level"), "1.5")
    assert store.read_judging_state("typed", 5)[1] == 1.5
    redis_client.delete(store.keys.series("typed", "level"))
    redis_client.hset(store.keys.series("typed", "level"), "not", "a string")
    with pytest.raises(StoreUnavailable):
        store.read_judging_state("typed", 5)


def test_wait_counts_the_replica_of_the_node_that_took_the_write(redis_cluster, redis_prefix):
    """With REDIS_WAIT_REPLICAS=1 every write to the cluster is acknowledged, and the replica of
    the key's master has it: WAIT runs on the connection that wrote (a keyless WAIT would go to
    every node and their answers be summed)."""
    settings = Settings().replace(key_prefix=redis_prefix, env="test", redis_wait_replicas=1,
                                  redis_wait_timeout_ms=2000,
                                  redis_cluster_nodes=tuple((LOOPBACK, port) for port in redis_cluster.ports))
    client = make_redis(settings.storage)
    try:
        store = Store(client, settings)
        masters = redis_cluster.masters()
        for n, sensor in enumerate(SENSORS):
            assert store.append_reading(sensor, 1_000 + n, float(n)).status == "stored"
            key = store.keys.series(sensor, "readings")
            (replica,) = masters[client.get_node_from_key(key).port]
            with redis_cluster.node_client(replica) as direct:
                direct.execute_command("READONLY")  # a cluster replica answers reads of its slots
                assert float(direct.execute_command("TS.GET", key)[1]) == float(n)
    finally:
        client.close()


def test_a_failover_error_in_a_cluster_pipeline_reaches_the_store_as_an_error(redis_cluster, redis_prefix):
    """redis-py's cluster pipeline runs each command's response callback on an error reply too,
    and ``TS.REVRANGE``'s parser then raised a ``TypeError`` the store did not translate (a 500
    during a failover, found by tests/test_cluster_failover.py). The web tier's cluster client
    lets errors through its callbacks, so the judging read is a `StoreUnavailable` (503)."""
    settings = Settings().replace(key_prefix=redis_prefix, env="test",
                                  redis_cluster_nodes=tuple((LOOPBACK, port) for port in redis_cluster.ports))
    client = make_redis(settings.storage)
    try:
        store = Store(client, settings)
        store.append_reading("parsed", 1_000, 1.0)
        assert store.read_judging_state("parsed", 5)[0].values == (1.0,)  # replies are still parsed
        client.ts()  # registers the TimeSeries callbacks again, as every store call does
        lost = redis.ConnectionError("Connection closed by server.")
        callbacks = client.cluster_response_callbacks
        assert {"TS.REVRANGE", "TS.RANGE", "TS.GET"} <= set(callbacks)
        for command, callback in callbacks.items():
            assert callback(lost) is lost, command
        with pytest.raises(redis.ConnectionError):  # a RedisError: the store answers it 503
            raise_first_error([None, lost])
    except TypeError as exc:  # what the unwrapped callbacks raised
        pytest.fail(f"a callback parsed an error reply: {exc}")
    finally:
        client.close()
