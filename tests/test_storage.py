"""Storage over the real RedisTimeSeries: order, uniqueness, fencing, series layout."""
from __future__ import annotations

import threading

import pytest
import redis

from harness.process import wait_until
from harness.redis_server import RedisOptions
from webapp import create_app
from webapp.detection.vote import Ballot
from webapp.detection.vote import decide
from webapp.errors import StoreUnavailable
from webapp.storage import DAY_MS
from webapp.storage import Store

TOPOLOGIES = ("single", "cluster")  # every test here runs on one Redis and on the Redis Cluster
WRITERS = 5
PER_WRITER = 200


def test_concurrent_writers_never_share_a_timestamp(redis_connect, settings):
    """Five writers with their own connections, all asking for the same millisecond."""
    clients = [redis_connect() for _ in range(WRITERS)]
    stores = [Store(c, settings) for c in clients]
    barrier = threading.Barrier(WRITERS)
    stamps: list[int] = []
    lock = threading.Lock()

    def write(store: Store, writer: int) -> None:
        barrier.wait()
        for i in range(PER_WRITER):
            stored = store.append_reading("shared", 1_700_000_000_000, writer * 1000 + i)
            with lock:
                stamps.append(stored.timestamp)

    threads = [threading.Thread(target=write, args=(s, n)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    samples = stores[0].read_range("shared", "-", "+", count=10 * WRITERS * PER_WRITER)
    assert len(samples) == WRITERS * PER_WRITER
    times = [t for t, _ in samples]
    assert all(a < b for a, b in zip(times, times[1:]))
    assert sorted(stamps) == times
    written = (float(w * 1000 + i) for w in range(WRITERS) for i in range(PER_WRITER))
    assert sorted(v for _, v in samples) == sorted(written)
    for c in clients:
        c.close()


def test_concurrent_http_requests_store_every_reading(settings):
    """N /nuevo requests from 5 threads (each its own app, like 5 replicas) store N samples."""
    apps = [create_app(settings.replace(hostname=f"replica-{n}")) for n in range(WRITERS)]
    answers: list[int] = []

    def post(app, n: int) -> None:
        client = app.test_client()
        for i in range(50):
            answers.append(client.get(f"/nuevo?dato={n}.{i}&sensor=busy").status_code)

    threads = [threading.Thread(target=post, args=(a, n)) for n, a in enumerate(apps)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert answers == [201] * (WRITERS * 50)
    samples = apps[0].extensions["store"].read_range("busy", "-", "+", count=1000)
    assert len(samples) == WRITERS * 50
    assert len({t for t, _ in samples}) == WRITERS * 50
    for app in apps:
        app.extensions["redis"].close()


def test_a_reading_older_than_the_newest_goes_after_it(redis_client, settings):
    store = Store(redis_client, settings)
    assert store.append_reading("clock", 5_000, 1.0).timestamp == 5_000
    assert store.append_reading("clock", 4_000, 2.0).timestamp == 5_001
    assert [v for _, v in store.read_range("clock", "-", "+", 10)] == [1.0, 2.0]


def test_series_has_labels_retention_and_compaction_rules(redis_client, settings):
    store = Store(redis_client, settings.replace(retention_days=2))
    store.append_reading("lab", 1_000, 1.0)
    readings = store.keys.series("lab", "readings")
    info = redis_client.ts().info(readings)
    assert info.retention_msecs == 2 * 86_400_000
    assert info.labels == {"app": "aeroguard", "ns": store.keys.namespace, "sensor": "lab", "kind": "reading"}
    assert info.duplicate_policy in ("block", b"block")
    rules = {key: (rule[0], rule[1]) for key, rule in info.rules.items()}
    assert rules == {f"{readings}:avg_1m": (60_000, "AVG"), f"{readings}:avg_1h": (3_600_000, "AVG")}
    minute = redis_client.ts().info(f"{readings}:avg_1m")
    assert minute.retention_msecs == settings.retention.minute_retention_days * 86_400_000


def test_compaction_averages_each_minute(redis_client, settings):
    store = Store(redis_client, settings)
    for second, value in ((0, 10.0), (30, 20.0), (61, 50.0), (125, 1.0)):
        store.append_reading("avg", second * 1000, value)
    minute = redis_client.ts().range(store.keys.series("avg", "readings", "avg_1m"), "-", "+")
    assert [(int(t), float(v)) for t, v in minute] == [(0, 15.0), (60_000, 50.0)]


def test_epoch_fence_and_idempotency_in_one_step(redis_client, settings):
    store = Store(redis_client, settings)
    assert store.append_aggregate("g", 3, 1, 1_000, 1.0).status == "stored"
    assert store.append_aggregate("g", 3, 1, 1_000, 9.0).status == "duplicate"
    assert store.append_aggregate("g", 2, 2, 2_000, 1.0).newest_epoch == 3
    assert store.append_aggregate("g", 4, 1, 3_000, 2.0).status == "stored"
    # a late round of the current epoch (from the spool) is still taken, after the newest
    late = store.append_aggregate("g", 4, 0, 500, 3.0)
    assert late.status == "stored" and late.timestamp == 3_001
    assert store.group_state("g") == {"epoch": 4, "round": 0, "timestamp": 3_001, "duplicates": 1}
    assert [v for _, v in store.read_range("g", "-", "+", 10)] == [1.0, 2.0, 3.0]


def test_remembered_rounds_are_one_key_per_group_trimmed_to_the_retention(redis_client, settings):
    # 5 s: long enough that the key cannot expire while a loaded machine runs the 300 writes.
    store = Store(redis_client, settings.replace(retention_days=5_000 / DAY_MS))
    for round_ in range(300):
        assert store.append_aggregate("many", 1, round_, 1_000 + 100 * round_, 1.0).status == "stored"
    done = store.keys.group("many", "done")
    keys = set(redis_client.scan_iter(store.keys.group("many", "*")))
    assert keys == {store.keys.group("many", "fence"), done}
    remembered = redis_client.zrange(done, 0, -1)
    assert remembered == [f"1:{r}" for r in range(249, 300)]  # stored within 5 s of the newest
    assert store.append_aggregate("many", 1, 299, 40_000, 1.0).status == "duplicate"
    assert 0 < redis_client.pttl(done) <= 5_000


def test_judging_state_reads_only_its_window_and_the_reference_level(redis_client, settings):
    store = Store(redis_client, settings)
    for i in range(50):
        store.append_reading("win", 1_000 * i, float(i))
    window, level = store.read_judging_state("win", 10)
    assert window.values == tuple(float(i) for i in range(40, 50)) and level is None
    assert window.timestamps == tuple(1_000 * i for i in range(40, 50))
    earlier, _ = store.read_judging_state("win", 3, end=20_000)
    assert earlier.values == (18.0, 19.0, 20.0)
    decision = decide([Ballot("physical", False, 0.1, 1.0)], required=1)
    store.record_decision("win", 49_000, decision, level=44.25)
    assert store.read_judging_state("win", 1)[1] == 44.25
    assert 0 < redis_client.pttl(store.keys.series("win", "level")) <= store._retention_ms


def test_event_log_is_newest_first_and_filtered(redis_client, settings):
    store = Store(redis_client, settings)
    for i in range(5):
        store.record_event({"kind": "decision", "sensor": "a" if i % 2 else "b", "n": i})
    newest = store.read_events(10)  # a and b lie in different key buckets: their streams are merged
    assert sorted(e["n"] for e in newest) == [0, 1, 2, 3, 4]
    stamps = [int(e["id"].split("-")[0]) for e in newest]  # in one millisecond, buckets have no order
    assert stamps == sorted(stamps, reverse=True)
    assert [e["n"] for e in newest if e["sensor"] == "b"] == [4, 2, 0]
    assert [e["n"] for e in store.read_events(10, sensor="a")] == [3, 1]
    assert [e["n"] for e in store.read_events(1, sensor="b")] == [4]


def test_a_reading_comes_back_with_what_judging_it_needs(redis_client, settings):
    """``append_reading(…, judging=N)`` reads in the write's round trip what `read_for_judging`
    answers for the reading stored (a repeat's too), and reads nothing when the server forgot
    the script (judging then reads on its own)."""
    store = Store(redis_client, settings)
    for i in range(19):
        store.append_reading("pre", 1_000 * i, float(i))
    redis_client.script_flush()
    assert store.append_reading("pre", 19_000, 19.0, judging=1).judging is None  # unknown script: loaded now
    store.record_decision("pre", 19_000, decide([Ballot("physical", False, 0.1, 1.0)], required=1), level=7.5,
                          peaks={"count": "1", "filled": "0"})
    stored = store.append_reading("pre", 5_000, 42.0, "k:once", judging=5)  # after the newest: 19_001
    assert stored.timestamp == 19_001
    assert stored.judging == store.read_for_judging("pre", 5, end=19_001)
    assert stored.judging[0].values == (16.0, 17.0, 18.0, 19.0, 42.0) and stored.judging[1] == 7.5
    store.append_reading("pre", 30_000, 1.0)  # a later reading stays out of the repeat's window
    repeat = store.append_reading("pre", 0, 42.0, "k:once", judging=5)
    assert repeat.status == "duplicate" and repeat.judging == stored.judging
    redis_client.script_flush()
    assert store.append_reading("pre", 40_000, 3.0, judging=3).judging is None
    assert store.append_reading("pre", 41_000, 4.0, judging=3).judging == store.read_for_judging("pre", 3, end=41_000)


@pytest.mark.single_redis  # starts and fills servers of its own
def test_wait_for_a_replica_before_acknowledging(settings, make_redis_server):
    """With REDIS_WAIT_REPLICAS=1 a write is acknowledged only once a replica has it."""
    master = make_redis_server()
    waiting = settings.replace(redis_url=master.url, redis_wait_replicas=1, redis_wait_timeout_ms=200)
    client = redis.Redis.from_url(master.url, decode_responses=True)
    store = Store(client, waiting)
    with pytest.raises(StoreUnavailable, match="0 of 1 replica"):
        store.append_reading("acked", 1_000, 1.0)
    replica = make_redis_server(RedisOptions(replicaof=("127.0.0.1", master.port)))
    replica_client = redis.Redis.from_url(replica.url, decode_responses=True)
    wait_until(lambda: replica_client.info("replication")["master_link_status"] == "up", 20, "replica in sync")
    client.script_flush()
    patient = Store(client, waiting.replace(redis_wait_timeout_ms=3000))
    stored = patient.append_reading("acked", 2_000, 2.0)
    assert stored.status == "stored"
    assert replica_client.ts().get(store.keys.series("acked", "readings"))[1] == 2.0
    patient.append_reading("acked", 3_000, 3.0, judging=2)  # loads the read script, unknown after the flush
    assert patient.append_reading("acked", 4_000, 4.0, judging=2).judging[0].values == (3.0, 4.0)  # read after WAIT
    client.close()
    replica_client.close()
