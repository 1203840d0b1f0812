"""Issue 14: kill -9 a Redis Cluster master under writes through the real web tier; its replica
takes over and no acknowledged aggregate is lost.

A private cluster (`harness.redis_cluster.RedisCluster`: 3 masters, 3 replicas, AOF,
``min-replicas-to-write 1``, node timeout 2 s; not the session cluster other tests share) and
``create_app`` with ``REDIS_CLUSTER_NODES`` and ``REDIS_WAIT_REPLICAS=1``, warmed up, then served
by werkzeug as in tests/test_sentinel_failover.py. Four edge groups (two on the victim's shard,
one on each other shard) post rounds 1..250 each (1,000 aggregates), retrying any answer but a
2xx with the same ``epoch:round``, as the edge's spool does. After FAULT_AFTER acknowledgements
the master owning one group's slot is killed (``kill -9``); its replica is promoted, and the
killed node is restarted (a supervisor's job) and rejoins as the new master's replica: until
then the new master refuses writes (it has no replica). Afterwards every aggregate that got a
2xx is stored exactly once, in round order, and every failed attempt was a 503 (or no answer);
the unavailability windows (the killed master's shard, the others, the whole cluster) and the
non-2xx answers are printed.
"""
from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from harness.process import LOOPBACK
from harness.process import wait_until
from harness.redis_cluster import RedisCluster
from tests.test_sentinel_failover import ROUNDS
from tests.test_sentinel_failover import Stream
from tests.test_sentinel_failover import WebServer
from tests.test_sentinel_failover import aggregate
from tests.test_sentinel_failover import unavailability
from webapp import create_app
from webapp import shutdown
from webapp.config import Settings
from webapp.storage.keys import Keys

WARM_UP_READINGS = 16  # more than a window (WINDOW_SIZE, 10 by default): every detector votes
FAULT_AFTER = 300  # acknowledged aggregates (of 4 x ROUNDS) before the kill
STREAM_DEADLINE_S = 110.0  # about 20 s on a quiet 2-core machine; a loaded one needed more than 55


@pytest.fixture
def private_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    """A Redis Cluster of this test only: it kills one of its masters."""
    cluster = RedisCluster(tmp_path / "cluster")
    try:
        cluster.start(60)
        yield cluster
    finally:
        cluster.stop()


def pick_groups(cluster: RedisCluster, keys: Keys) -> tuple[int, dict[str, int]]:
    """Four group names, two on one master's slots (the victim's) and one on each other master;
    returns the victim's port and each group's master port (CLUSTER SLOTS via redis-py)."""
    with cluster.client() as client:
        owners = {f"g{n}": client.get_node_from_key(keys.group(f"g{n}", "fence")).port for n in range(64)}
    victim = owners["g0"]
    wanted = {port: 2 if port == victim else 1 for port in cluster.masters()}
    groups: dict[str, int] = {}
    for name, port in owners.items():
        if wanted[port]:
            wanted[port] -= 1
            groups[name] = port
    assert not any(wanted.values()), f"64 names did not cover the 3 masters: {owners}"
    return victim, groups


def role(cluster: RedisCluster, port: int) -> str | None:
    try:
        with cluster.node_client(port) as client:
            return client.info("replication")["role"]
    except redis.RedisError:
        return None


def kill_master(cluster: RedisCluster, victim: int, timings: dict[str, float]) -> Callable[[], None]:
    """The fault: kill -9 `victim`, wait for its replica's promotion, restart the killed node
    and wait until every node says cluster_state ok and every master has a synced replica."""
    replica = cluster.masters()[victim][0]
    index = cluster.node_index(victim)

    def fault() -> None:
        started = time.monotonic()
        cluster.kill_node(index)
        wait_until(lambda: role(cluster, replica) == "master", 20, "the replica to take over", interval=0.02)
        timings["promoted"] = time.monotonic() - started
        cluster.nodes[index].start()  # a supervisor restarts the crashed node: it rejoins as a replica
        cluster.wait_ready(30)
        timings["healthy"] = time.monotonic() - started

    return fault


def post_like_spool(port: int, group: str, base_ms: int, stream: Stream, deadline: float) -> None:
    """Post rounds 1..ROUNDS in order, as an edge node's spool does: any answer but a 2xx (and
    no answer) is retried after a pause with the same ``epoch:round`` (edge/delivery.py; the
    Sentinel test's `stream_group` stops at an answer other than 503). Every answer is kept in
    ``stream.statuses`` (`attempt`'s)."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=5)
    stream.acked[group] = []
    for round_ in range(1, ROUNDS + 1):
        body = json.dumps(aggregate(group, round_, base_ms))
        while time.monotonic() < deadline:
            answer = attempt(conn, body)
            stream.statuses.setdefault((group, round_), []).append(answer)
            with stream.lock:
                if isinstance(answer, int):
                    stream.acked[group].append(round_)
                    stream.ack_times.append(time.monotonic())
                    break
                stream.failures.append(time.monotonic())
            time.sleep(0.05)
        else:
            break
    conn.close()


def attempt(conn: http.client.HTTPConnection, body: str) -> int | str:
    """POST one aggregate: a 2xx status, `failure`'s label of another answer, or the name of the
    exception raised instead of an answer (a refused connection, a timeout)."""
    try:
        conn.request("POST", "/api/v1/readings", body, {"Content-Type": "application/json"})
        with conn.getresponse() as response:
            text = response.read()
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        return exc.__class__.__name__
    return response.status if 200 <= response.status < 300 else failure(response.status, text)


def failure(status: int, body: bytes) -> str:
    """``<status> <the web tier's error message>`` of an answer other than a 2xx.

    >>> failure(503, b'{"error": "storage unavailable: ClusterDownError", "served_by": "w1"}')
    '503 storage unavailable: ClusterDownError'
    """
    try:
        return f"{status} {json.loads(body)['error']}"
    except (ValueError, KeyError, TypeError):
        return f"{status} {body[:80]!r}"


def warm_up(app, patience_s: float = 30.0) -> None:
    """Judge full windows of a sensor of its own first, as a deployed tier has before the edge
    reaches it: the learned detectors load (seconds on this machine) before anything is timed.
    A 503 is asked again, as the edge's spool would (on a loaded machine a fresh cluster's
    replica can miss the 500 ms WAIT: CI, 2026-12-01); nothing is killed before this ends."""
    client = app.test_client()
    deadline = time.monotonic() + patience_s
    for i in range(WARM_UP_READINGS):
        while True:
            answer = client.get(f"/detectar?dato={20 + i % 3}&sensor=warm-up")
            if answer.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert answer.status_code == 201, answer.get_data(as_text=True)


def stream_through_web(settings: Settings, groups: list[str], fault: Callable[[], None]) \
        -> tuple[dict[str, Stream], int, float]:
    """Stream every group (its own `Stream`) through the served app; `fault()` after FAULT_AFTER acks."""
    app = create_app(settings)
    warm_up(app)
    streams = {group: Stream() for group in groups}
    base_ms = time.time_ns() // 1_000_000 - 2 * ROUNDS * 1000
    deadline = time.monotonic() + STREAM_DEADLINE_S
    try:
        with WebServer(app) as web:
            clients = [threading.Thread(target=post_like_spool,
                                        args=(web.port, group, base_ms, streams[group], deadline))
                       for group in groups]
            for client in clients:
                client.start()
            wait_until(lambda: sum(s.total() for s in streams.values()) >= FAULT_AFTER, 30,
                       f"{FAULT_AFTER} acknowledged aggregates")
            fault_at = time.monotonic()
            fault()
            for client in clients:
                client.join(max(0.0, deadline - time.monotonic()) + 5)
    finally:
        shutdown(app)
    return streams, base_ms, fault_at


def window(streams: list[Stream], fault_at: float) -> float:
    """Longest gap without a 2xx to any of `streams` that ends after the fault, in seconds."""
    return unavailability(Stream(ack_times=[t for s in streams for t in s.ack_times]), fault_at)


def stored_rounds(client: redis.RedisCluster, keys: Keys, group: str) -> tuple[list, list]:
    """A group's stored samples (timestamp, value) and its write ids in stored order."""
    samples = [(int(t), float(v)) for t, v in client.ts().range(keys.series(group, "readings"), "-", "+")]
    return samples, client.zrange(keys.group(group, "done"), 0, -1)


def non_2xx(streams: dict[str, Stream], since: float = 0.0) -> tuple[Counter, int]:
    """Each answer other than a 2xx (`failure`'s label, or the exception raised instead of an
    answer) with how many attempts got it, and how many attempts failed after `since`."""
    answers = [a for s in streams.values() for tries in s.statuses.values() for a in tries]
    after = sum(t >= since for s in streams.values() for t in s.failures)
    return Counter(a for a in answers if isinstance(a, str)), after


@pytest.mark.slow
@pytest.mark.timeout(150)  # the cluster's start and stop included
def test_kill_cluster_master_while_streaming_loses_no_acknowledged_aggregate(private_cluster, redis_prefix):
    settings = Settings().replace(
        key_prefix=redis_prefix, hostname="test-replica", env="test",
        redis_cluster_nodes=tuple((LOOPBACK, port) for port in private_cluster.ports),
        redis_wait_replicas=1, redis_wait_timeout_ms=500, redis_socket_timeout_s=1.0)
    keys = Keys(redis_prefix, settings.storage.key_buckets)
    victim, owners = pick_groups(private_cluster, keys)
    replica = private_cluster.masters()[victim][0]
    timings: dict[str, float] = {}

    fault = kill_master(private_cluster, victim, timings)
    streams, base_ms, fault_at = stream_through_web(settings, list(owners), fault)

    on_victim = [g for g, port in owners.items() if port == victim]
    with private_cluster.client() as client:
        stored = {group: stored_rounds(client, keys, group) for group in owners}
    expected = {group: [(aggregate(group, r, base_ms)["timestamp"], r + 0.25) for r in s.acked[group]]
                for group, s in streams.items()}
    lost = sum(len(set(expected[g]) - set(stored[g][0])) for g in owners)
    failed, after_fault = non_2xx(streams, since=fault_at)
    print(f"\ncluster kill -9 master :{victim} (groups {', '.join(on_victim)}): replica :{replica} promoted after "
          f"{timings.get('promoted', float('nan')):.2f} s, cluster ok with a replica per master after "
          f"{timings.get('healthy', float('nan')):.2f} s; write-unavailability: killed shard "
          f"{window([streams[g] for g in on_victim], fault_at):.2f} s, other shards "
          f"{window([s for g, s in streams.items() if g not in on_victim], fault_at):.2f} s, whole cluster "
          f"{window(list(streams.values()), fault_at):.2f} s; "
          f"{sum(s.total() for s in streams.values())} acknowledged, {lost} lost; "
          f"{sum(failed.values())} non-2xx attempts ({after_fault} after the kill), all retried: {dict(failed)}")

    assert private_cluster.masters().get(replica) == [victim], "the replica took over; the killed node follows it"
    for group, stream in streams.items():
        rounds = stream.acked[group]
        assert rounds == list(range(1, ROUNDS + 1)), \
            f"{group}: every round acknowledged in order before the deadline; last answers " \
            f"{stream.statuses.get((group, len(rounds) + 1), [])[-5:]}"
        samples, write_ids = stored[group]
        assert samples == expected[group], f"{group}: acknowledged aggregates stored exactly once, in order"
        assert write_ids == [f"1:{r}" for r in rounds], f"{group}: one write id per round, in order"
    # Storage failing mid-request is "unavailable, retry" (503), never an unhandled error.
    assert all(a.startswith("503 ") or not a[0].isdigit() for a in failed), \
        f"answers other than 503 while a master failed over: {dict(failed)}"
