"""Delivery: the durable spool, failover across URLs, stale-epoch answers, replay after an outage.

The web tier is the real one (`web_tier` in tests/conftest.py: ``create_app`` on a loopback
port over real Redis); what it stored is read back from its store.
"""
from __future__ import annotations

import threading
import time

from edge.delivery import Delivery
from edge.delivery import Spool
from edge.hotconfig import merge
from edge.schema import aggregate
from harness.process import free_port
from harness.process import wait_until

BASE_MS = int(time.time() * 1000) - 3_600_000  # an hour ago: within the web tier's retention


def _doc(round_: int, epoch: int = 1) -> dict:
    return aggregate("g1", epoch, round_, BASE_MS + round_, 20.0,
                     [{"node_id": "n1", "value": 20.0, "measured_at": BASE_MS}], [])


def _rounds(web_tier) -> list[int]:
    return [round_ for _, round_ in web_tier.rounds()]


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


def test_failover_to_a_live_url(tmp_path, web_tier):
    dead = f"http://127.0.0.1:{free_port()}"
    with Harness(tmp_path, [dead, web_tier.url]) as h:
        for r in range(5):
            h.delivery.submit(_doc(r))
        wait_until(lambda: web_tier.count() == 5, 10, "5 aggregates stored")
    assert _rounds(web_tier) == [0, 1, 2, 3, 4]


def test_a_slow_replica_is_left_within_the_timeout(tmp_path, web_tier):
    slow = web_tier.replica(delay_s=2.0)
    with Harness(tmp_path, [slow.url, web_tier.url], period=0.5) as h:
        h.delivery.submit(_doc(1))
        wait_until(lambda: len(web_tier.recorder.stored) == 1, 10, "stored through the fast replica")
        h.delivery.submit(_doc(2))
        wait_until(lambda: len(web_tier.recorder.stored) == 2, 10, "the next one stored")
    assert [s.doc["round"] for s in web_tier.recorder.stored] == [1, 2]  # both by the fast replica
    assert slow.slowed == ["/api/v1/readings"]  # round 2 went straight to the fast replica
    wait_until(lambda: slow.slowly_answered, 10, "the slow replica to answer its late copy of round 1")
    assert slow.recorder.stored == [] and _rounds(web_tier) == [1, 2]  # the late copy: a duplicate
    assert web_tier.app.extensions["store"].group_state("g1")["duplicates"] >= 1


def test_outage_spools_then_replays_each_round_once_in_order(tmp_path, web_tier):
    web_tier.stop()
    with Harness(tmp_path, [web_tier.url], period=0.2) as h:
        for r in range(20):
            h.delivery.submit(_doc(r))
        wait_until(lambda: len(h.delivery.spool) == 20, 10, "all 20 aggregates spooled")
        web_tier.start()
        wait_until(lambda: web_tier.count() == 20 and not h.delivery.backlog(), 20, "replay finished")
    assert _rounds(web_tier) == list(range(20))
    # Each answered 201 once (a retry after a slow answer is answered 200: a duplicate, not stored).
    assert [s.doc["round"] for s in web_tier.stored] == list(range(20))


def test_stale_epoch_is_dropped_and_reported(tmp_path, web_tier):
    with Harness(tmp_path, [web_tier.url]) as h:
        h.delivery.submit(_doc(1, epoch=5))
        h.delivery.submit(_doc(2, epoch=3))
        h.delivery.submit(_doc(1, epoch=5))
        wait_until(lambda: sum(h.delivery.counts.snapshot().values()) == 3, 10, "three answers")
        assert h.stale == [(3, 5)]
        assert h.delivery.counts.snapshot() == {"stored": 1, "stale": 1, "duplicate": 1}
        assert not h.delivery.backlog()
    assert web_tier.rounds() == [(5, 1)]


def test_nothing_is_sent_while_offline(tmp_path, web_tier):
    with Harness(tmp_path, [web_tier.url]) as h:
        h.online.clear()
        h.delivery.submit(_doc(1))
        wait_until(lambda: len(h.delivery.spool) == 1, 5, "spooled while offline")
        assert web_tier.count() == 0
        h.online.set()
        wait_until(lambda: web_tier.count() == 1, 10, "sent once back online")


def _refused(h) -> list[dict]:
    return [doc for _, doc in h.delivery.refused.oldest(100)]


def test_an_aggregate_the_web_tier_refuses_is_kept_counted_and_the_next_round_still_goes(tmp_path, web_tier):
    spool = Spool(str(tmp_path), 1000)
    spool.append({**_doc(1), "value": 2e9})  # spooled by an edge that did not check the contract
    spool.append(_doc(2))
    with Harness(tmp_path, [web_tier.url]) as h:
        wait_until(lambda: web_tier.count() == 1 and not h.delivery.backlog(), 10, "the spool replayed")
        assert _rounds(web_tier) == [2]
        assert h.delivery.counts["refused"] == 1
        [kept] = _refused(h)
    assert kept["refused_by"] == "web" and kept["code"] == 400 and kept["url"].startswith(web_tier.url)
    assert "value must be within" in kept["error"] and kept["aggregate"] == {**_doc(1), "value": 2e9}
    assert tmp_path.joinpath("refused").is_dir() and len(Spool(str(tmp_path / "refused"), 10)) == 1


def test_the_edge_refuses_its_own_bad_aggregate_before_sending_and_keeps_it(tmp_path, web_tier):
    bad = aggregate("g1", 1, 1, BASE_MS + 1, 20.0, [],
                    [{"node_id": "n3", "value": 95.0, "reason": "x" * 201}])
    with Harness(tmp_path, [web_tier.url]) as h:
        h.delivery.submit(bad)
        h.delivery.submit(_doc(2))
        wait_until(lambda: web_tier.count() == 1, 10, "the good round stored")
        assert _rounds(web_tier) == [2]
        assert h.delivery.counts["refused"] == 1
        [kept] = _refused(h)
    assert kept["refused_by"] == "edge" and kept["code"] is None and kept["url"] is None  # never sent
    assert kept["aggregate"] == bad
    assert "excluded[0].reason must be a string of at most 200 characters" in kept["error"]


def test_the_dead_letter_folder_is_bounded(tmp_path):
    refused = Spool(str(tmp_path / "refused"), 2)
    delivery = Delivery(Spool(str(tmp_path), 10), lambda: merge({}), lambda: True, lambda *a: None, refused=refused)
    for r in range(3):
        delivery.submit({**_doc(r), "value": float("nan")})
    assert [doc["aggregate"]["round"] for _, doc in refused.oldest(5)] == [1, 2]
    assert refused.dropped == 1 and delivery.counts["refused"] == 3 and not delivery.backlog()
