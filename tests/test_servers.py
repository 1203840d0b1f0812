"""The real servers the suite and the local stack run: ZooKeeper ensemble and Redis Stack."""
from __future__ import annotations

import pytest

from harness.process import ServerNotInstalled
from harness.process import free_port
from harness.process import pid_alive
from harness.process import wait_until
from harness.redis_server import RedisServer
from harness.zookeeper import ZooKeeperEnsemble


def modes(ensemble: ZooKeeperEnsemble) -> list[str | None]:
    return [ensemble.mode(i) for i in range(len(ensemble))]


def test_ensemble_has_one_leader_and_two_followers(zk_ensemble):
    assert sorted(modes(zk_ensemble)) == ["follower", "follower", "leader"]
    assert zk_ensemble.hosts.count("127.0.0.1:") == 3
    assert all(pid_alive(pid) for pid in zk_ensemble.pids)


def test_zk_fixture_is_chrooted(zk, zk_hosts, test_id):
    zk.create("/hello", b"world")
    assert zk.get("/hello")[0] == b"world"
    assert zk.chroot == f"/t-{test_id}"


def test_stopping_a_follower_keeps_quorum(make_zk_ensemble, zk):
    ensemble = make_zk_ensemble()
    follower = modes(ensemble).index("follower")
    leader = ensemble.leader()
    ensemble.stop_node(follower)
    assert ensemble.pids[follower] is None
    assert ensemble.mode(leader) == "leader"
    survivors = [i for i in range(3) if i != follower]
    wait_until(lambda: all(ensemble.mode(i) in ("leader", "follower") for i in survivors), 10,
               "the two remaining nodes to serve")
    ensemble.start_node(follower)
    ensemble.wait_ready(30)
    assert sorted(modes(ensemble)) == ["follower", "follower", "leader"]


def test_killing_the_leader_elects_another(make_zk_ensemble):
    ensemble = make_zk_ensemble()
    old = ensemble.leader()
    ensemble.kill_node(old)
    # leader() is an index, and node 0 may win: wait on "is not None", never on truthiness
    wait_until(lambda: ensemble.leader() is not None, 20, "a new zookeeper leader")
    assert ensemble.leader() != old


def test_redis_has_timeseries(redis_client, redis_prefix):
    key = f"{redis_prefix}temp"
    redis_client.ts().create(key, labels={"test": redis_prefix})
    assert redis_client.ts().add(key, 1000, 21.5) == 1000
    assert redis_client.ts().range(key, "-", "+") == [(1000, 21.5)]


def test_redis_binds_loopback_only(redis_client):
    assert redis_client.config_get("bind")["bind"] == "127.0.0.1"


def test_redis_stop_is_by_pid(tmp_path):
    server = RedisServer(tmp_path, free_port())
    server.start()
    server.wait_ready()
    pid = server.pid
    server.stop()
    assert not pid_alive(pid)


def test_missing_install_names_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr("harness.zookeeper.ZK_JAVA_DIR", tmp_path)
    with pytest.raises(ServerNotInstalled, match="zookeeper jars not found.*make setup"):
        ZooKeeperEnsemble(tmp_path, [free_port()]).start()
