"""Issue 14: kill -9 a Redis Cluster master under writes through the real web tier; its replica
takes over and no acknowledged aggregate is lost.

A private cluster (`harness.redis_cluster.RedisCluster`: 3 masters, 3 replicas, AOF,
``min-replicas-to-write 1``, node timeout 2 s; not the session cluster other tests share) and
``create_app`` with ``REDIS_CLUSTER_NODES`` and ``REDIS_WAIT_REPLICAS=1``, served by werkzeug with
the streaming client of tests/test_sentinel_failover.py: four edge groups (two on the victim's
shard, one on each other shard) post rounds 1..250 each (1,000 aggregates), every one retried
with the same ``epoch:round`` on 503 or a connection error, as the edge's spool does. After
FAULT_AFTER acknowledgements the master owning one group's slot is killed (``kill -9``); its
replica is promoted, and the killed node is restarted (a supervisor's job) and rejoins as the new
master's replica: until then the new master refuses writes (it has no replica). Afterwards every
aggregate that got a 2xx is stored exactly once, in round order; the unavailability windows (the
killed master's shard, the others, the whole cluster) and the non-2xx answers are printed.
"""
from __future__ import annotations

import threading
import time
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
from tests.test_sentinel_failover import stream_group
from tests.test_sentinel_failover import unavailability
from webapp import create_app
from webapp import shutdown
from webapp.config import Settings
from webapp.storage.keys import Keys

FAULT_AFTER = 300  # acknowledged aggregates (of 4 x ROUNDS) before the kill
STREAM_DEADLINE_S = 55.0  # the cluster's start and stop take under 15 s more: the test stays < 90 s


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


def stream_through_web(settings: Settings, groups: list[str], fault: Callable[[], None]) \
        -> tuple[dict[str, Stream], int, float]:
    """Stream every group (its own `Stream`) through the served app; `fault()` after FAULT_AFTER acks."""
    app = create_app(settings)
    streams = {group: Stream() for group in groups}
    base_ms = time.time_ns() // 1_000_000 - 2 * ROUNDS * 1000
    deadline = time.monotonic() + STREAM_DEADLINE_S
    try:
        with WebServer(app) as web:
            clients = [threading.Thread(target=stream_group, args=(web.port, group, base_ms, streams[group], deadline))
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


def stored_rounds(client: redis.RedisCluster, keys: Keys, group: str, base_ms: int) -> tuple[list, list]:
    """A group's stored samples (timestamp, value) and its write ids in stored order."""
    samples = [(int(t), float(v)) for t, v in client.ts().range(keys.series(group, "readings"), "-", "+")]
    return samples, client.zrange(keys.group(group, "done"), 0, -1)


def non_2xx(streams: dict[str, Stream]) -> tuple[int, int]:
    """Attempts answered 503, and attempts that got no HTTP answer (connection error or timeout)."""
    answers = [a for s in streams.values() for tries in s.statuses.values() for a in tries]
    return sum(a == 503 for a in answers), sum(isinstance(a, str) for a in answers)


@pytest.mark.slow
@pytest.mark.timeout(90)  # the cluster's start and stop included
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
        stored = {group: stored_rounds(client, keys, group, base_ms) for group in owners}
    expected = {group: [(aggregate(group, r, base_ms)["timestamp"], r + 0.25) for r in s.acked[group]]
                for group, s in streams.items()}
    lost = sum(len(set(expected[g]) - set(stored[g][0])) for g in owners)
    answered_503, no_answer = non_2xx(streams)
    print(f"\ncluster kill -9 master :{victim} (groups {', '.join(on_victim)}): replica :{replica} promoted after "
          f"{timings.get('promoted', float('nan')):.2f} s, cluster ok with a replica per master after "
          f"{timings.get('healthy', float('nan')):.2f} s; write-unavailability: killed shard "
          f"{window([streams[g] for g in on_victim], fault_at):.2f} s, other shards "
          f"{window([s for g, s in streams.items() if g not in on_victim], fault_at):.2f} s, whole cluster "
          f"{window(list(streams.values()), fault_at):.2f} s; "
          f"{sum(s.total() for s in streams.values())} acknowledged, {lost} lost; non-2xx: {answered_503} "
          f"answered 503, {no_answer} without an answer (all retried)")

    assert private_cluster.masters().get(replica) == [victim], "the replica took over; the killed node follows it"
    for group, stream in streams.items():
        rounds = stream.acked[group]
        assert rounds == list(range(1, ROUNDS + 1)), \
            f"{group}: every round acknowledged in order before the deadline; last answers " \
            f"{stream.statuses.get((group, len(rounds) + 1), [])[-5:]}"
        samples, write_ids = stored[group]
        assert samples == expected[group], f"{group}: acknowledged aggregates stored exactly once, in order"
        assert write_ids == [f"1:{r}" for r in rounds], f"{group}: one write id per round, in order"
