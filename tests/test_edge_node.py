"""EdgeNode in-process against the real ensemble: election, rounds, discovery, fencing, LOST."""
from __future__ import annotations

import json

import pytest
from kazoo.recipe.queue import LockingQueue

from edge.__main__ import make_client
from edge.config import EdgeSettings
from edge.events import EventLog
from edge.node import EdgeNode
from edge.schema import Reading
from edge.sources import build_source
from harness.faults.invariants import check_invariants
from harness.faults.znodes import leader_of
from harness.process import wait_until
from tests.edge_fixtures import expire_session
from tests.edge_fixtures import wait_rounds

PERIOD_S = 0.3
BASE = "/aeroguard/groups/g1"


@pytest.fixture
def nodes(zk, zk_hosts, receiver, tmp_path):
    """Factory of in-process nodes of group g1 in this test's chroot; all stopped after."""
    made: dict[str, EdgeNode] = {}

    def start(node_id: str, source: str = "const:20") -> EdgeNode:
        settings = EdgeSettings(group="g1", node_id=node_id, zk_hosts=zk_hosts + zk.chroot, session_timeout_s=2.0,
                                source=source, spool_dir=str(tmp_path / f"spool-{node_id}"),
                                defaults={"sampling_period_s": PERIOD_S, "api_urls": [receiver.url]},
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


def test_three_nodes_elect_one_leader_and_deliver_fused_rounds(zk, nodes, receiver, tmp_path):
    made = [nodes("n1", "const:20.0"), nodes("n2", "const:20.2"), nodes("n3", "const:90.0")]
    leader = _leader(made)
    wait_until(lambda: len(zk.get_children(f"{BASE}/nodes")) == 3, 5, "3 nodes registered")
    wait_until(lambda: any(len(s.doc["readings"]) == 2 and s.doc["excluded"] for s in receiver.stored), 10,
               "a round with every node's reading")
    assert [n.epoch is not None for n in made].count(True) == 1
    doc = next(s.doc for s in receiver.stored if s.doc["excluded"])
    assert doc["value"] == pytest.approx(20.1)
    assert doc["excluded"][0]["node_id"] == "n3"
    assert leader_of(zk, "g1") == (leader.settings.node_id, leader.epoch)
    info = json.loads(zk.get(f"{BASE}/nodes/n2")[0])
    assert {"node_id", "host", "pid", "started_at", "version"} <= info.keys()
    assert check_invariants(receiver.stored, _events(tmp_path)).ok


def test_session_expiry_moves_leadership_and_the_old_leader_rejoins(zk, zk_hosts, nodes, receiver, tmp_path):
    made = [nodes("n1"), nodes("n2"), nodes("n3")]
    old = _leader(made)
    old_epoch = old.epoch
    wait_rounds(receiver, 3, 10)
    expire_session(zk_hosts + zk.chroot, old.zk.client_id)
    new = wait_until(lambda: next((n for n in made if n.epoch is not None and n.epoch > old_epoch), None), 10,
                     "a leader with a higher epoch")
    wait_until(lambda: zk.exists(f"{BASE}/nodes/{old.settings.node_id}") is not None, 10,
               "the old leader registered again")
    wait_until(lambda: len(zk.get_children(f"{BASE}/election")) == 3, 10, "three contenders again")
    wait_rounds(receiver, 3, 10)
    assert max(receiver.epochs()) == new.epoch
    verdict = check_invariants(receiver.stored, _events(tmp_path))
    assert verdict.ok, verdict.failures


def test_a_leader_whose_lock_node_vanished_is_fenced_off(zk, nodes, receiver, tmp_path):
    made = [nodes("n1"), nodes("n2")]
    old = _leader(made)
    wait_rounds(receiver, 2, 10)
    lock = json.loads(zk.get(f"{BASE}/epoch")[0])["lock_node"]
    zk.delete(lock)  # what the server does when a paused leader's session expires
    wait_until(lambda: old.counts["fenced"] == 1, 5, "the old leader's trigger transaction failed")
    new = _leader(made)
    wait_rounds(receiver, 3, 10)
    assert new.epoch > int(lock[-10:])
    assert check_invariants(receiver.stored, _events(tmp_path)).ok


def test_stop_hands_over_within_a_period(zk, nodes, receiver):
    made = [nodes("n1"), nodes("n2")]
    old = _leader(made)
    wait_rounds(receiver, 2, 10)
    before = receiver.count()
    old.stop()
    other = next(n for n in made if n is not old)
    wait_until(lambda: other.epoch is not None, 2 * PERIOD_S + 1.0, "the survivor leads")
    wait_until(lambda: receiver.count() > before + 1, 3, "rounds continue")


def test_old_round_readings_are_counted_never_used(zk, nodes, receiver, tmp_path):
    made = [nodes("n1")]
    leader = _leader(made)
    wait_rounds(receiver, 1, 10)
    queue = LockingQueue(zk, f"{BASE}/queue")
    queue.put(Reading("ghost", 0, 0, 999.0, 1).to_bytes())
    queue.put(b"not json")
    wait_until(lambda: leader.counts["readings_late"] == 1 and leader.counts["invalid_readings"] == 1, 5,
               "late and invalid entries handled")
    wait_until(lambda: len(queue) == 0, 5, "the queue drained")
    wait_rounds(receiver, 2, 10)
    assert all(r["node_id"] != "ghost" for s in receiver.stored for r in s.doc["readings"])


def test_a_reading_is_logged_as_measured_even_when_its_put_is_lost(zk, nodes, receiver, tmp_path):
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
    landed = LandedThenLost(LockingQueue(zk, f"{BASE}/queue"))
    node.follower.answer(landed, {"epoch": 99, "round": 5})
    assert node.counts["put_failed"] == 1
    assert [(e["epoch"], e["round"], e["value"]) for e in _events(tmp_path)
            if e["kind"] == "reading" and e["epoch"] == 99] == [(99, 5, 20.7)]


def test_a_stale_epoch_answer_makes_the_leader_step_down_and_rejoin(zk, nodes, receiver):
    receiver._newest["g1"] = 2  # the web tier has already accepted epoch 2 from some leader
    node = nodes("n1")
    wait_until(lambda: receiver.count() >= 2, 15, "aggregates accepted again")
    assert node.counts["stale_epoch_answers"] >= 1
    assert min(receiver.epochs()) >= 2
    assert [code for _, code in receiver.answers].count(409) >= 1
