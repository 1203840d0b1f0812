"""Delivery: the durable spool, failover across URLs, stale-epoch answers, replay after an outage."""
from __future__ import annotations

import threading

import pytest

from edge.delivery import Delivery
from edge.delivery import Spool
from edge.hotconfig import merge
from edge.schema import aggregate
from scripts.servers import free_port
from scripts.servers import wait_until
from tests.edge_fixtures import Receiver


def _doc(round_: int, epoch: int = 1) -> dict:
    return aggregate("g1", epoch, round_, 1_700_000_000_000 + round_, 20.0,
                     [{"node_id": "n1", "value": 20.0, "measured_at": 1_700_000_000_000}], [])


@pytest.fixture
def receivers():
    made = []

    def make(**kwargs) -> Receiver:
        made.append(Receiver(**kwargs).start())
        return made[-1]

    yield make
    for receiver in made:
        receiver.stop()


class Harness:
    """A `Delivery` whose URLs and connectivity the test controls."""

    def __init__(self, spool_dir, urls, period=1.0):
        self.config = merge({"sampling_period_s": period, "api_urls": urls})
        self.online = threading.Event()
        self.online.set()
        self.stale = []
        self.delivery = Delivery(Spool(str(spool_dir), 1000), lambda: self.config, self.online.is_set,
                                 lambda epoch, newest: self.stale.append((epoch, newest)))

    def __enter__(self):
        self.delivery.start()
        return self

    def __exit__(self, *exc):
        self.delivery.stop()


def test_spool_survives_a_restart_in_order(tmp_path):
    spool = Spool(str(tmp_path), 10)
    for r in range(3):
        spool.append(_doc(r))
    reopened = Spool(str(tmp_path), 10)
    assert [doc["round"] for _, doc in reopened.oldest(10)] == [0, 1, 2]
    name, _ = reopened.oldest(1)[0]
    reopened.remove(name)
    assert len(Spool(str(tmp_path), 10)) == 2
    reopened.append(_doc(3))
    assert [doc["round"] for _, doc in Spool(str(tmp_path), 10).oldest(10)] == [1, 2, 3]


def test_failover_to_a_live_url(tmp_path, receivers):
    live = receivers()
    dead = f"http://127.0.0.1:{free_port()}"
    with Harness(tmp_path, [dead, live.url]) as h:
        for r in range(5):
            h.delivery.submit(_doc(r))
        wait_until(lambda: live.count() == 5, 10, "5 aggregates stored")
    assert live.rounds() == [0, 1, 2, 3, 4]


def test_a_slow_replica_is_left_within_the_timeout(tmp_path, receivers):
    fast = receivers()
    slow = fast.replica(delay_s=2.0).start()
    try:
        with Harness(tmp_path, [slow.url, fast.url], period=0.5) as h:
            h.delivery.submit(_doc(1))
            wait_until(lambda: fast.count() == 1, 3, "stored through the fast replica")
            h.delivery.submit(_doc(2))
            wait_until(lambda: fast.count() == 2, 1, "the next one goes straight to the fast replica")
        wait_until(lambda: len(fast.answers) == 3, 5, "the slow replica finishes its request")
        assert [code for _, code in fast.answers] == [201, 201, 200]  # the late copy: a duplicate
    finally:
        slow.stop()


def test_outage_spools_then_replays_each_round_once_in_order(tmp_path, receivers):
    web = receivers()
    port = web.port
    web.stop()
    with Harness(tmp_path, [f"http://127.0.0.1:{port}"], period=0.2) as h:
        for r in range(20):
            h.delivery.submit(_doc(r))
        wait_until(lambda: len(h.delivery.spool) == 20, 10, "all 20 aggregates spooled")
        back = receivers(port=port)
        wait_until(lambda: back.count() == 20 and not h.delivery.backlog(), 20, "replay finished")
    assert back.rounds() == list(range(20))
    assert [code for _, code in back.answers].count(201) == 20


def test_stale_epoch_is_dropped_and_reported(tmp_path, receivers):
    web = receivers()
    with Harness(tmp_path, [web.url]) as h:
        h.delivery.submit(_doc(1, epoch=5))
        h.delivery.submit(_doc(2, epoch=3))
        h.delivery.submit(_doc(1, epoch=5))
        wait_until(lambda: len(web.answers) == 3, 10, "three answers")
        assert h.stale == [(3, 5)]
        assert h.delivery.counts.snapshot() == {"stored": 1, "stale": 1, "duplicate": 1}
        assert not h.delivery.backlog()


def test_nothing_is_sent_while_offline(tmp_path, receivers):
    web = receivers()
    with Harness(tmp_path, [web.url]) as h:
        h.online.clear()
        h.delivery.submit(_doc(1))
        wait_until(lambda: len(h.delivery.spool) == 1, 5, "spooled while offline")
        assert web.count() == 0
        h.online.set()
        wait_until(lambda: web.count() == 1, 5, "sent once back online")
