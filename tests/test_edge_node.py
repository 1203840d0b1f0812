"""EdgeNode in-process against the real ensemble and the real web tier (`web_tier` in
tests/conftest.py): election, rounds, discovery, fencing, LOST."""
from __future__ import annotations

import json
import time

import pytest
from kazoo.recipe.queue import LockingQueue

from contracts.zk_layout import ZkLayout
from edge.__main__ import make_client
from edge.config import EdgeSettings
from edge.events import EventLog
from edge.node import EdgeNode
from edge.schema import Reading
from edge.sources import build_source
from harness.faults.invariants import check_invariants
from harness.faults.znodes import expire_session
from harness.faults.znodes import leader_of
from harness.process import wait_until

PERIOD_S = 0.3
WAIT = 30.0  # a generous bound on any one step
G1 = ZkLayout().group("g1")


@pytest.fixture
def nodes(zk, zk_hosts, web_tier, tmp_path):
    """Factory of in-process nodes of group g1 in this test's chroot; all stopped after."""
    made: dict[str, EdgeNode] = {}

    def start(node_id: str, source: str = "const:20") -> EdgeNode:
        settings = EdgeSettings(group="g1", node_id=node_id, zk_hosts=zk_hosts + zk.chroot, session_timeout_s=2.0,
                                source=source, spool_dir=str(tmp_path / f"spool-{node_id}"),
                                defaults={"sampling_period_s": PERIOD_S, "api_urls": [web_tier.url]},
                                event_log=str(tmp_path / f"{node_id}.events"))
        client = make_client(settings)
        client.start(timeout=10)
        node = EdgeNode(client, settings, build_source(source), EventLog(settings.event_log, node_id))
        node.start()
        made[node_id] = node
        return node

    yield start
    for node in made.values():
        if node.zk.state != "CLOSED" and not node.state.shutdown.is_set():
            node.stop()


def _leader(made: list[EdgeNode]) -> EdgeNode:
    return wait_until(lambda: next((n for n in made if n.epoch is not None), None), 10, "a leader")


def _events(tmp_path) -> list[dict]:
    from edge.events import read_events
    return [e for path in tmp_path.glob("*.events") for e in read_events(str(path))]


def test_three_nodes_elect_one_leader_and_deliver_fused_rounds(zk, nodes, web_tier, tmp_path):
    made = [nodes("n1", "const:20.0"), nodes("n2", "const:20.2"), nodes("n3", "const:90.0")]
    leader = _leader(made)
    wait_until(lambda: len(zk.get_children(G1.nodes)) == 3, WAIT, "3 nodes registered")
    wait_until(lambda: any(len(s.doc["readings"]) == 2 and s.doc["excluded"] for s in web_tier.stored), WAIT,
               "a round with every node's reading")
    assert [n.epoch is not None for n in made].count(True) == 1
    doc = next(s.doc for s in web_tier.stored if s.doc["excluded"])
    assert doc["value"] == pytest.approx(20.1)
    assert doc["excluded"][0]["node_id"] == "n3"
    web = web_tier.app.test_client()
    assert pytest.approx(20.1) in [r["value"] for r in web.get("/listar?sensor=g1").json["readings"]]
    faults = web.get("/api/v1/anomalies?kind=sensor_fault&sensor=g1").json["events"]
    assert faults and {e["node_id"] for e in faults} == {"n3"}  # the store kept the exclusion
    assert leader_of(zk, "g1") == (leader.settings.node_id, leader.epoch)
    info = json.loads(zk.get(G1.node("n2"))[0])
    assert {"node_id", "host", "pid", "started_at", "version"} <= info.keys()
    assert check_invariants(web_tier.stored, _events(tmp_path)).ok


def test_session_expiry_moves_leadership_and_the_old_leader_rejoins(zk, zk_hosts, nodes, web_tier, tmp_path):
    made = [nodes("n1"), nodes("n2"), nodes("n3")]
    old = _leader(made)
    old_epoch = old.epoch
    web_tier.wait_stored(3, WAIT)
    expire_session(zk_hosts + zk.chroot, old.zk.client_id)
    new = wait_until(lambda: next((n for n in made if n.epoch is not None and n.epoch > old_epoch), None), WAIT,
                     "a leader with a higher epoch")
    wait_until(lambda: zk.exists(G1.node(old.settings.node_id)) is not None, WAIT,
               "the old leader registered again")
    wait_until(lambda: len(zk.get_children(G1.election)) == 3, WAIT, "three contenders again")
    web_tier.wait_stored(3, WAIT)
    assert max(epoch for epoch, _ in web_tier.rounds()) == new.epoch
    verdict = check_invariants(web_tier.stored, _events(tmp_path))
    assert verdict.ok, verdict.failures


def test_a_leader_whose_lock_node_vanished_is_fenced_off(zk, nodes, web_tier, tmp_path):
    made = [nodes("n1"), nodes("n2")]
    old = _leader(made)
    web_tier.wait_stored(2, WAIT)
    lock = json.loads(zk.get(G1.epoch)[0])["lock_node"]
    zk.delete(lock)  # what the server does when a paused leader's session expires
    wait_until(lambda: old.counts["fenced"] == 1, WAIT, "the old leader's trigger transaction failed")
    new = _leader(made)
    web_tier.wait_stored(3, WAIT)
    assert new.epoch > int(lock[-10:])
    assert check_invariants(web_tier.stored, _events(tmp_path)).ok


def test_stop_hands_over_to_the_survivor_without_missing_a_round(zk, nodes, web_tier):
    made = [nodes("n1"), nodes("n2")]
    old = _leader(made)
    web_tier.wait_stored(2, WAIT)
    old_epoch = old.epoch
    old.stop()
    other = next(n for n in made if n is not old)
    wait_until(lambda: other.epoch is not None, WAIT, "the survivor leads")
    wait_until(lambda: sum(epoch == other.epoch for epoch, _ in web_tier.rounds()) >= 2, WAIT, "rounds continue")
    stored = web_tier.rounds()
    rounds = [round_ for _, round_ in stored]
    assert rounds == list(range(rounds[0], rounds[0] + len(rounds)))  # in order, none missed at the handover
    assert [epoch for epoch, _ in stored] == sorted(epoch for epoch, _ in stored)
    assert {epoch for epoch, _ in stored} == {old_epoch, other.epoch}


def test_old_round_readings_are_counted_never_used(zk, nodes, web_tier, tmp_path):
    made = [nodes("n1")]
    leader = _leader(made)
    web_tier.wait_stored(1, WAIT)
    queue = LockingQueue(zk, G1.queue)
    queue.put(Reading("ghost", 0, 0, 999.0, 1).to_bytes())
    queue.put(b"not json")
    wait_until(lambda: leader.counts["readings_late"] == 1 and leader.counts["invalid_readings"] == 1, WAIT,
               "late and invalid entries handled")
    wait_until(lambda: len(queue) == 0, WAIT, "the queue drained")
    web_tier.wait_stored(2, WAIT)
    assert all(r["node_id"] != "ghost" for s in web_tier.stored for r in s.doc["readings"])


def test_a_reading_is_logged_as_measured_even_when_its_put_is_lost(zk, nodes, tmp_path):
    """A connection loss can hide a create that landed; the leader will count that reading,
    so the event log must already say it was measured for that round (invariant I5)."""
    from kazoo.exceptions import ConnectionLoss

    class LandedThenLost:
        def __init__(self, queue):
            self.queue = queue

        def put(self, value):
            self.queue.put(value)
            raise ConnectionLoss()

    node = nodes("n1", "const:20.7")
    _leader([node])
    landed = LandedThenLost(LockingQueue(zk, G1.queue))
    node.follower.answer(landed, {"epoch": 99, "round": 5})
    assert node.counts["put_failed"] == 1
    assert [(e["epoch"], e["round"], e["value"]) for e in _events(tmp_path)
            if e["kind"] == "reading" and e["epoch"] == 99] == [(99, 5, 20.7)]


def test_a_stale_epoch_answer_makes_the_leader_step_down_and_rejoin(zk, nodes, web_tier):
    # The web tier has already stored epoch 2 of g1, from some earlier leader.
    seeded = {"group": "g1", "epoch": 2, "round": 10**6, "timestamp": int(time.time() * 1000) - 60_000, "value": 20.0}
    assert web_tier.app.test_client().post("/api/v1/readings", json=seeded).status_code == 201
    node = nodes("n1")
    wait_until(lambda: web_tier.count() >= 3, WAIT, "aggregates accepted again")
    assert node.counts["stale_epoch_answers"] >= 1  # answered 409 for epochs 0 and 1, then stepped down
    assert node.epoch is None or node.epoch >= 2
    assert min(epoch for epoch, _ in web_tier.rounds()) == 2
