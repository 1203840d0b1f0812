"""The fault matrix (docs/reliability.md), rows 1-6 and 9, against real ``python -m edge`` processes.

Each test runs three nodes of group g1 (T = 2 s session timeout, tickTime 500 ms, period
0.5 s) against a real 3-node ensemble and the real web tier (`web_tier` in tests/conftest.py:
``create_app`` on a loopback port over real Redis), injects one fault, and checks the
invariants I1-I5 over what the web tier stored and the nodes' event logs (I7, no restart on
reconfig, in the reconfig test). The tests assert what happens (who leads, which rounds are
stored, in which order, what was triggered) within generous bounded waits, never how long it
took: recovery times against the budgets of docs/reliability.md are `make drill`'s to measure.
"""
from __future__ import annotations

import signal
import time

import pytest

from harness.faults.edge_group import EdgeGroup
from harness.faults.invariants import check_invariants
from harness.faults.proxy import BlackHoleProxy
from harness.faults.znodes import set_config
from harness.process import wait_until

pytestmark = pytest.mark.slow

T = 2.0
PERIOD = 0.5
WAIT = 30.0  # a generous bound on any one recovery (docs/reliability.md budgets it at T + tick + period)


@pytest.fixture
def group(edge_group) -> EdgeGroup:
    return edge_group(PERIOD, T)


def _start_three(group: EdgeGroup, web_tier):
    for i in (1, 2, 3):
        group.start(f"n{i}", f"const:{20 + i / 10}")
    leader, epoch = group.leader(WAIT)
    wait_until(lambda: len(group.live()) == 3, WAIT, "three nodes registered")
    web_tier.wait_stored(3, WAIT)
    return leader, epoch


def _assert_invariants(web_tier, group):
    verdict = check_invariants(web_tier.stored, group.events())
    assert verdict.ok, verdict.failures


def _first_stored_after(web_tier, t: float, epoch: int | None = None) -> float:
    return wait_until(lambda: next((s.arrived for s in web_tier.stored
                                    if s.arrived > t and (epoch is None or s.doc["epoch"] == epoch)), None),
                      WAIT, "an aggregate stored after the fault")


def _missing_rounds(web_tier, since: int = 0) -> list[int]:
    """Rounds from `since` on that the store lacks, up to the last one it holds."""
    rounds = sorted({round_ for _, round_ in web_tier.rounds() if round_ >= since})
    return sorted(set(range(rounds[0], rounds[-1] + 1)) - set(rounds))


def _last_round(web_tier) -> int:
    return max(round_ for _, round_ in web_tier.rounds())


def test_row1_leader_kill9(group, web_tier):
    old, old_epoch = _start_three(group, web_tier)
    killed_at = time.time()
    old.kill()
    new, epoch = group.leader(WAIT, above=old_epoch)
    assert new is not old
    _first_stored_after(web_tier, killed_at, epoch)
    web_tier.wait_stored(3, WAIT)
    assert len(_missing_rounds(web_tier)) <= 1  # at most the round the leader died in
    wait_until(lambda: old.node_id not in group.live(), WAIT, "the dead node left discovery")
    wait_until(lambda: len(group.zk.get_children(group.znodes.queue + "/entries")) <= 2, WAIT, "queue kept small")
    _assert_invariants(web_tier, group)


def test_planned_restart_sigterm_hands_over_without_missing_a_round(group, web_tier):
    old, old_epoch = _start_three(group, web_tier)
    stopped_at = time.time()
    assert old.stop() == 0
    new, epoch = group.leader(WAIT, above=old_epoch)
    assert new is not old
    _first_stored_after(web_tier, stopped_at, epoch)
    web_tier.wait_stored(2, WAIT)
    assert _missing_rounds(web_tier) == []
    epochs = [epoch for epoch, _ in web_tier.rounds()]
    assert epochs == sorted(epochs) and set(epochs) == {old_epoch, epoch}  # one handover, in order
    _assert_invariants(web_tier, group)


def test_row2_paused_leader_is_fenced_off(group, web_tier):
    old, old_epoch = _start_three(group, web_tier)
    old.signal(signal.SIGSTOP)
    new, epoch = group.leader(WAIT, above=old_epoch)
    _first_stored_after(web_tier, time.time(), epoch)
    resumed = time.time()
    old.signal(signal.SIGCONT)
    wait_until(lambda: any(e["kind"] == "registered" and e["t"] > resumed for e in old.events()), WAIT,
               "the old leader re-registered after LOST")
    web_tier.wait_stored(3, WAIT)
    late_triggers = [e for e in old.events("trigger") if e["epoch"] == old_epoch and e["t"] > resumed]
    assert late_triggers == []
    assert group.leader()[0] is new
    assert all(s.doc["epoch"] == epoch for s in web_tier.stored if s.arrived > resumed)
    _assert_invariants(web_tier, group)


def test_row2_leader_cut_off_by_a_black_hole(group, web_tier, zk_hosts, zk):
    ports = [int(h.rsplit(":", 1)[1]) for h in zk_hosts.split(",")]
    proxies = [BlackHoleProxy(p) for p in ports]
    try:
        hosts = ",".join(f"127.0.0.1:{p.port}" for p in proxies) + zk.chroot
        cut = group.start("n1", "const:20.1", zk_hosts=hosts)
        group.leader(WAIT)
        group.start("n2", "const:20.2")
        group.start("n3", "const:20.3")
        web_tier.wait_stored(3, WAIT)
        _, old_epoch = group.leader()
        cut_at = time.time()
        for proxy in proxies:
            proxy.black_hole()
        suspended = wait_until(lambda: next((e["t"] for e in cut.events("zk_state")
                                             if e["state"] == "SUSPENDED" and e["t"] > cut_at), None),
                               WAIT, "the cut-off leader noticed SUSPENDED")
        new, epoch = group.leader(WAIT, above=old_epoch)
        assert new is not cut
        _first_stored_after(web_tier, time.time(), epoch)
        healed = time.time()
        for proxy in proxies:
            proxy.restore()
        wait_until(lambda: "n1" in group.live() and
                   any(e["kind"] == "registered" and e["t"] > healed for e in cut.events()), WAIT,
                   "the cut-off node rejoined")
        web_tier.wait_stored(2, WAIT)
        assert [e for e in cut.events("trigger") if e["issued_at"] / 1000 > suspended] == []
        assert [e for e in cut.events("delivery") if e["sent_at"] > suspended and e["epoch"] == old_epoch
                and e["status"] == "stored"] == []
        _assert_invariants(web_tier, group)
    finally:
        for proxy in proxies:
            proxy.close()


def test_row5_follower_killed_mid_round(group, web_tier):
    leader, epoch = _start_three(group, web_tier)
    victim = next(p for n, p in group.processes.items() if p is not leader)
    victim.kill()
    wait_until(lambda: victim.node_id not in group.live(), WAIT, "the dead follower left discovery")
    web_tier.wait_stored(3, WAIT)
    assert group.leader()[1] == epoch
    for stored in web_tier.stored:
        nodes = [r["node_id"] for r in stored.doc["readings"] + stored.doc["excluded"]]
        assert len(nodes) == len(set(nodes))
    assert _missing_rounds(web_tier) == []
    _assert_invariants(web_tier, group)


def test_row6_web_replicas_down_slow_and_back(group, web_tier, zk):
    slow = web_tier.replica(delay_s=3.0)
    dead = web_tier.replica()
    dead.stop()
    set_config(zk, {"sampling_period_s": PERIOD, "api_urls": [dead.url, slow.url, web_tier.url]})
    _start_three(group, web_tier)
    web_tier.wait_stored(4, WAIT)
    web_tier.stop()
    slow.stop()
    down_at = time.time()
    wait_until(lambda: any(e["kind"] == "delivery" and e["status"] == "failed" and e["t"] > down_at
                           for e in group.events()), WAIT, "deliveries failing")
    wait_until(lambda: len([e for e in group.events("trigger") if e["t"] > down_at]) >= 6, WAIT,
               "six rounds triggered during the outage")
    web_tier.start()
    back_at = time.time()
    web_tier.wait_stored(8, WAIT)
    assert _missing_rounds(web_tier) == []  # the outage's rounds were spooled and replayed, each once
    keys = [s.key for s in web_tier.stored]
    assert len(keys) == len(set(keys))  # no round answered 201 twice, by any replica
    rounds = sorted(e["round"] for e in group.events("trigger") if down_at < e["t"] < back_at)
    assert rounds == list(range(rounds[0], rounds[-1] + 1))  # the leader kept triggering every round
    _assert_invariants(web_tier, group)


def test_row9_hot_reconfiguration(group, web_tier, zk):
    _start_three(group, web_tier)
    pids = {n: p.pid for n, p in group.processes.items()}

    def applied_everywhere(period: float, after: float) -> bool:
        return all(any(e["config"]["sampling_period_s"] == period and e["t"] > after for e in p.events("config"))
                   for p in group.processes.values())

    changed_at = time.time()
    set_config(zk, {"sampling_period_s": 0.3, "api_urls": [web_tier.url]})
    wait_until(lambda: applied_everywhere(0.3, changed_at), WAIT, "0.3 s applied by every node")
    for bad in ('{"sampling_period_s": 0.3', '{"sampling_period_s": 0}', '{"sampling_period_s": -1}',
                '{"sampling_period_s": 0.3, "colour": "red"}'):
        at = time.time()
        set_config(zk, bad)
        wait_until(lambda: all(any(e["t"] > at for e in p.events("config_rejected"))
                               for p in group.processes.values()), WAIT, f"{bad} rejected everywhere")
    burst_at = time.time()
    for i in range(200):
        set_config(zk, {"sampling_period_s": round(0.3 + (i + 1) / 1000, 3), "api_urls": [web_tier.url]})
    wait_until(lambda: applied_everywhere(0.5, burst_at), WAIT, "the last of 200 values applied")
    web_tier.wait_stored(3, WAIT)
    assert {n: p.pid for n, p in group.processes.items()} == pids and all(
        p.alive() for p in group.processes.values())  # I7
    _assert_invariants(web_tier, group)


@pytest.fixture
def private_group(make_zk_ensemble, edge_group):
    """Three nodes on a private ensemble this test may break; returns ``(group, ensemble)``."""
    from tests.conftest import make_kazoo_client

    ensemble = make_zk_ensemble()
    admin = make_kazoo_client(ensemble.hosts)
    admin.start(timeout=15)
    yield edge_group(PERIOD, T, admin, ensemble.hosts), ensemble
    admin.stop()
    admin.close()


def _lost_or_new_terms(group: EdgeGroup, after: float) -> list[dict]:
    return [e for e in group.events() if e["t"] > after and
            (e["kind"] == "leader" or (e["kind"] == "zk_state" and e["state"] == "LOST"))]


def test_row3_one_zookeeper_node_down(private_group, web_tier):
    group, ensemble = private_group
    _, epoch = _start_three(group, web_tier)
    leader_index = ensemble.leader()
    for index in ([i for i in range(3) if i != leader_index][0], leader_index):
        at, last = time.time(), _last_round(web_tier)
        ensemble.kill_node(index)
        web_tier.wait_stored(6, WAIT)
        assert _lost_or_new_terms(group, at) == []
        assert group.leader()[1] == epoch
        # A node whose server died reconnects to another (SUSPENDED, not LOST): the leader may
        # abort the round it was collecting, and no more.
        assert len(_missing_rounds(web_tier, since=last)) <= 1
        ensemble.start_node(index)
        ensemble.wait_ready(WAIT)
    _assert_invariants(web_tier, group)


def test_row4_quorum_lost_for_three_session_timeouts(private_group, web_tier):
    group, ensemble = private_group
    leader, epoch = _start_three(group, web_tier)
    down = [i for i in range(3) if i != ensemble.leader()][:1] + [ensemble.leader()]
    lost_at = time.time()
    for index in down:
        ensemble.kill_node(index)
    suspended = wait_until(lambda: next((e["t"] for e in leader.events("zk_state")
                                         if e["state"] == "SUSPENDED" and e["t"] > lost_at), None), WAIT,
                           "the leader noticed the outage")
    wait_until(lambda: time.time() > lost_at + 3 * T, 3 * T + 1, "three session timeouts")
    restarting = time.time()
    last = _last_round(web_tier)
    for index in down:
        ensemble.start_node(index)
    wait_until(lambda: sum(ensemble.mode(i) in ("leader", "follower") for i in range(3)) >= 2, WAIT, "a quorum again")
    back_at = time.time()
    _first_stored_after(web_tier, back_at)
    web_tier.wait_stored(4, WAIT)
    assert group.leader()[1] == epoch
    # Nothing issued while suspended (a trigger issued just before is logged once its commit returns).
    assert [e for e in group.events("trigger") if suspended < e["issued_at"] / 1000 < restarting] == []
    assert [e for e in group.events("delivery") if suspended < e["sent_at"] < restarting] == []
    # Rounds resume from the last one (no back-filled rounds for the outage), each stored once.
    rounds = [e["round"] for e in sorted(group.events("trigger"), key=lambda e: e["t"]) if e["t"] > restarting]
    assert rounds == list(range(rounds[0], rounds[0] + len(rounds))) and rounds[0] <= last + 2
    wait_until(lambda: len(group.live()) == 3, WAIT, "discovery entries back")
    _assert_invariants(web_tier, group)
