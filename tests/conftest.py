"""Shared fixtures: real servers on free loopback ports, one namespace per test; app fixtures.

Servers part: a 3-node ZooKeeper ensemble (tickTime 500 ms) and one redis-server with
RedisTimeSeries are started once per session through `harness` (never the
``make up`` instance); so is a Redis Cluster (3 masters, 3 replicas: `harness.redis_cluster`)
the first time a test asks for it. A test module that sets ``TOPOLOGIES = ("single",
"cluster")`` runs each of its tests that uses Redis (``topology``, ``redis_client``,
``redis_connect``, ``settings`` …) once per topology, unless marked ``single_redis`` (tests that
stop, fill or pause a server of their own). Each test gets its own ZooKeeper chroot ``/t-<id>`` and Redis key
prefix ``t:<id>:`` (use ``test=<id>`` as a TimeSeries label: label filters cross prefixes).
A server that cannot start fails every test that needs it with a message naming what is
missing; nothing is skipped. Tests that kill ZooKeeper or Redis nodes use the
``make_zk_ensemble`` / ``make_redis_server`` factories so the shared servers stay whole.
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Callable
from typing import Iterator

import pytest
import redis
from kazoo.client import KazooClient
from kazoo.retry import KazooRetry

from harness.process import LOOPBACK
from harness.process import ServerError
from harness.process import free_port
from harness.process import free_ports
from harness.redis_cluster import RedisCluster
from harness.redis_server import RedisOptions
from harness.redis_server import RedisServer
from harness.redis_topology import RedisSentinelSet
from harness.redis_topology import SentinelOptions
from harness.zookeeper import ZooKeeperEnsemble

ZK_TICK_MS = 500
ZK_SESSION_TIMEOUT_S = 4.0
SERVER_START_TIMEOUT_S = 60.0


def _start_zk(base_dir: Path, size: int = 3, tick_ms: int = ZK_TICK_MS) -> ZooKeeperEnsemble:
    ensemble = ZooKeeperEnsemble(base_dir, free_ports(size), tick_ms=tick_ms)
    try:
        ensemble.start()
        ensemble.wait_ready(SERVER_START_TIMEOUT_S)
    except ServerError as exc:
        ensemble.stop()
        pytest.fail(f"ZooKeeper ensemble could not start: {exc}", pytrace=False)
    return ensemble


def _start_redis(base_dir: Path, options: RedisOptions | None = None) -> RedisServer:
    server = RedisServer(base_dir, free_port(), options)
    try:
        server.start()
        server.wait_ready(SERVER_START_TIMEOUT_S)
    except ServerError as exc:
        server.stop()
        pytest.fail(f"redis-server could not start: {exc}", pytrace=False)
    return server


@pytest.fixture(scope="session")
def zk_ensemble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperEnsemble]:
    """The session's 3-node ZooKeeper ensemble (tickTime 500 ms). Do not kill its nodes."""
    ensemble = _start_zk(tmp_path_factory.mktemp("zk"))
    yield ensemble
    ensemble.stop()


@pytest.fixture(scope="session")
def zk_hosts(zk_ensemble: ZooKeeperEnsemble) -> str:
    """``127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`` of the session ensemble (no chroot)."""
    return zk_ensemble.hosts


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The session's redis-server with RedisTimeSeries; its URL is ``redis_server.url``."""
    server = _start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """The session's Redis Cluster (3 masters, 3 replicas, TimeSeries), started on first use."""
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start(SERVER_START_TIMEOUT_S)
    except ServerError as exc:
        cluster.stop()
        pytest.fail(f"Redis Cluster could not start: {exc}", pytrace=False)
    yield cluster
    cluster.stop()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "single_redis: runs on one Redis only, even in a module with TOPOLOGIES")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run a module's Redis tests on each of its ``TOPOLOGIES`` (``single``, ``cluster``)."""
    topologies = getattr(metafunc.module, "TOPOLOGIES", None)
    if topologies and "topology" in metafunc.fixturenames and \
            metafunc.definition.get_closest_marker("single_redis") is None:
        metafunc.parametrize("topology", topologies, indirect=True)


@pytest.fixture
def topology(request: pytest.FixtureRequest) -> str:
    """``single`` (the session redis-server) or ``cluster`` (the session Redis Cluster)."""
    return getattr(request, "param", "single")


@pytest.fixture
def redis_connect(topology: str, request: pytest.FixtureRequest) -> Callable[[], redis.Redis]:
    """A factory of new clients (``decode_responses=True``) of this test's topology: a
    ``redis.Redis`` of the session server, or a ``redis.cluster.RedisCluster``."""
    if topology == "cluster":
        return request.getfixturevalue("redis_cluster").client
    server = request.getfixturevalue("redis_server")
    return lambda: redis.Redis.from_url(server.url, decode_responses=True)


@pytest.fixture
def test_id() -> str:
    """A fresh id naming this test's namespaces (chroot, key prefix, ``test`` label)."""
    return uuid.uuid4().hex


def make_kazoo_client(hosts: str) -> KazooClient:
    """A KazooClient with the project's settings (docs/edge.md, "Kazoo settings"), not started."""
    return KazooClient(
        hosts=hosts,
        timeout=ZK_SESSION_TIMEOUT_S,
        connection_retry=KazooRetry(max_tries=-1, delay=0.1, max_delay=1.0),
        command_retry=KazooRetry(max_tries=5, delay=0.1, max_delay=1.0),
    )


@pytest.fixture
def zk(zk_hosts: str, test_id: str) -> Iterator[KazooClient]:
    """A started KazooClient chrooted at ``/t-<test_id>``; the chroot is deleted after."""
    chroot = f"/t-{test_id}"
    # kazoo warns (an error here) when a chroot does not exist yet: create it from the root.
    admin = make_kazoo_client(zk_hosts)
    admin.start(timeout=15)
    try:
        admin.ensure_path(chroot)
        client = make_kazoo_client(zk_hosts + chroot)
        client.start(timeout=15)
        yield client
        client.stop()
        client.close()
        admin.delete(chroot, recursive=True)
    finally:
        admin.stop()
        admin.close()


@pytest.fixture
def redis_client(redis_connect: Callable[[], redis.Redis]) -> Iterator[redis.Redis]:
    """A client (decode_responses=True) of this test's topology; use ``redis_prefix``."""
    client = redis_connect()
    yield client
    client.close()


@pytest.fixture
def redis_prefix(test_id: str) -> str:
    """Key prefix of this test: ``t:<test_id>:``."""
    return f"t:{test_id}:"


@pytest.fixture
def make_zk_ensemble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., ZooKeeperEnsemble]]:
    """Factory of private, started ensembles for tests that kill or stop ZooKeeper nodes.

    ``make_zk_ensemble(size=3, tick_ms=500)``; every ensemble is stopped after the test.
    """
    made: list[ZooKeeperEnsemble] = []

    def make(size: int = 3, tick_ms: int = ZK_TICK_MS) -> ZooKeeperEnsemble:
        made.append(_start_zk(tmp_path_factory.mktemp("zk-private"), size, tick_ms))
        return made[-1]

    yield make
    for ensemble in made:
        ensemble.stop()


@pytest.fixture
def make_redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RedisServer]]:
    """Factory of private, started redis-servers: ``make_redis_server(options=None)``."""
    made: list[RedisServer] = []

    def make(options: RedisOptions | None = None) -> RedisServer:
        made.append(_start_redis(tmp_path_factory.mktemp("redis-private"), options))
        return made[-1]

    yield make
    for server in made:
        server.stop()


@pytest.fixture
def make_sentinel_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RedisSentinelSet]]:
    """Factory of private, ready Sentinel topologies (master, replica, 3 Sentinels) to fail over.

    ``make_sentinel_set(options=None)``; every topology is stopped after the test.
    """
    made: list[RedisSentinelSet] = []

    def make(options: SentinelOptions | None = None) -> RedisSentinelSet:
        made.append(RedisSentinelSet(tmp_path_factory.mktemp("redis-sentinel"), options=options))
        try:
            made[-1].start(SERVER_START_TIMEOUT_S)
            made[-1].wait_ready(SERVER_START_TIMEOUT_S)
        except ServerError as exc:
            pytest.fail(f"Redis Sentinel topology could not start: {exc}", pytrace=False)
        return made[-1]

    yield make
    for topology in made:
        topology.stop()


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The whole local stack (`make up`'s services: ZooKeeper ×3, Redis, web under gunicorn,
    edge group ``boiler-1`` of three nodes) on free ports; yields its exports (``WEB_URL``, …)."""
    from harness.stack.config import StackConfig
    from harness.stack.launcher import start_services
    from harness.stack.launcher import stop_services

    ports = free_ports(11)
    config = StackConfig(state_dir=tmp_path_factory.mktemp("stack"), zk_ports=tuple(ports[0:3]),
                         zk_peer_ports=tuple(ports[3:6]), zk_election_ports=tuple(ports[6:9]),
                         redis_port=ports[9], web_port=ports[10])
    config.log_dir.mkdir(parents=True)
    services, exports = start_services(config)
    yield exports
    stop_services(services)


# ---------------------------------------------------------------------------------------
# app fixtures: see below (`app`, `client`: create_app(test settings) aimed at the servers
# above; `web_tier`: the real web tier served on a loopback port for the edge tests;
# `edge_group`: ``python -m edge`` processes delivering to it). Everything above this block
# is self-contained.
# ---------------------------------------------------------------------------------------

from harness.drill.web_tier import WebTier  # noqa: E402
from harness.faults.edge_group import EdgeGroup  # noqa: E402
from harness.faults.event_logs import Stored  # noqa: E402
from harness.process import wait_until  # noqa: E402
from webapp import create_app  # noqa: E402  (app fixtures below need the servers above)
from webapp import shutdown  # noqa: E402
from webapp.config import Settings  # noqa: E402


@pytest.fixture
def settings(topology: str, request: pytest.FixtureRequest, redis_prefix: str) -> Settings:
    """Web tier settings aimed at this test's Redis topology, in this test's key namespace: the
    session redis-server, or the session Redis Cluster with every write waiting for a replica
    (``REDIS_WAIT_REPLICAS=1``, as ``make up REDIS=cluster`` runs it)."""
    base = Settings().replace(key_prefix=redis_prefix, hostname="test-replica", env="test")
    if topology == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        return base.replace(redis_cluster_nodes=tuple((LOOPBACK, port) for port in cluster.ports),
                            redis_wait_replicas=1)
    return base.replace(redis_url=request.getfixturevalue("redis_server").url)


@pytest.fixture
def app(settings: Settings):
    """``create_app(settings)``; its Redis pool is closed after the test."""
    app = create_app(settings)
    yield app
    shutdown(app)


@pytest.fixture
def client(app):
    return app.test_client()


WARM_UP_READINGS = 16  # more than a window (WINDOW_SIZE, 10 by default): every detector votes


class ServedWebTier(WebTier):
    """The real web tier, ``create_app(settings)``, served by werkzeug on a loopback port.

    Behind it a `Recorder` (harness/drill/web_tier.py) keeps each aggregate answered 201 and
    when its request arrived, for `check_invariants`; `rounds` reads what the store holds. The
    faults the edge meets are played around the real app: `stop` takes it down and `start`
    brings it back on the same port; `delay_s` slows every answer (a WSGI wrapper); `replica`
    serves another app over the same Redis namespace, as web replicas share one Redis.
    """

    def __init__(self, settings: Settings, family: list[ServedWebTier], delay_s: float = 0.0) -> None:
        self.slowed: list[str] = []  # the paths of the requests `delay_s` slowed, as they arrive
        self.slowly_answered: list[str] = []  # and once answered
        super().__init__(settings, wrap=(lambda app: self._slowly(app, delay_s)) if delay_s else None)
        self.settings = settings
        self._warm_up()
        self.family = family  # this tier and its replicas: one Redis namespace
        self.family.append(self)

    def _warm_up(self) -> None:
        """Judge full windows of a sensor of its own, as a deployed tier has before the edge
        reaches it: the learned detectors are loaded (TensorFlow's import takes ~20 s on two
        busy cores, once per process) before the first aggregate is timed by the edge."""
        client = self.app.test_client()
        for i in range(WARM_UP_READINGS):
            assert client.get(f"/detectar?dato={20 + i % 3}&sensor=warm-up").status_code == 201

    def _slowly(self, app, delay_s: float):
        def slow(environ, start_response):
            self.slowed.append(environ["PATH_INFO"])
            time.sleep(delay_s)
            answer = app(environ, start_response)
            self.slowly_answered.append(environ["PATH_INFO"])
            return answer
        return slow

    def replica(self, delay_s: float = 0.0) -> ServedWebTier:
        return ServedWebTier(self.settings, self.family, delay_s).start()

    @property
    def stored(self) -> list[Stored]:
        """The aggregates every replica answered 201, in arrival order."""
        return sorted((s for tier in self.family for s in list(tier.recorder.stored)), key=lambda s: s.arrived)

    def rounds(self, group: str = "g1") -> list[tuple[int, int]]:
        """``(epoch, round)`` of each aggregate of `group` the store holds, in the order stored."""
        store = self.app.extensions["store"]
        members = store.client.zrange(store.keys.group(group, "done"), 0, -1)
        return [tuple(map(int, member.split(":"))) for member in members]

    def count(self, group: str = "g1") -> int:
        return len(self.rounds(group))

    def wait_stored(self, count: int, timeout: float) -> None:
        """Wait until the store holds `count` more aggregates of group g1 than now."""
        target = self.count() + count
        wait_until(lambda: self.count() >= target, timeout, f"{count} more stored aggregates")


@pytest.fixture
def web_tier(settings: Settings) -> Iterator[ServedWebTier]:
    """The real web tier on a free loopback port (`ServedWebTier`) over this test's Redis
    namespace; it and its replicas are stopped and closed after the test."""
    family: list[ServedWebTier] = []
    yield ServedWebTier(settings, family).start()
    for tier in family:
        tier.stop()
        shutdown(tier.app)


@pytest.fixture
def edge_group(tmp_path: Path, zk: KazooClient, zk_hosts: str,
               web_tier: ServedWebTier) -> Iterator[Callable[..., EdgeGroup]]:
    """Factory of `EdgeGroup`s (harness/faults/edge_group.py): ``python -m edge`` processes of
    group g1 delivering to `web_tier`; ``edge_group(period_s, session_timeout, admin=None,
    hosts=None)`` (an admin client and the hosts of another ensemble; default: this test's
    chroot). Every process is stopped after the test."""
    made: list[EdgeGroup] = []

    def make(period_s: float = 0.5, session_timeout: float = 2.0, admin: KazooClient | None = None,
             hosts: str | None = None) -> EdgeGroup:
        made.append(EdgeGroup(tmp_path, admin or zk, hosts or zk_hosts + zk.chroot, [web_tier.url], period_s,
                              session_timeout))
        return made[-1]

    yield make
    for group in made:
        group.stop()


def snapshot(client: redis.Redis, prefix: str) -> dict[str, object]:
    """Every key under `prefix` with its whole content, to prove a request changed nothing."""
    state: dict[str, object] = {}
    for key in sorted(client.scan_iter(match=f"{prefix}*", count=1000)):
        kind = client.type(key)
        if kind == "TSDB-TYPE":
            state[key] = (client.ts().range(key, "-", "+"), client.ts().info(key).rules)
        elif kind == "stream":
            state[key] = client.xrange(key)
        elif kind == "hash":
            state[key] = client.hgetall(key)
        elif kind == "string":
            state[key] = client.get(key)
        else:
            state[key] = kind
    return state
