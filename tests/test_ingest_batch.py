"""Batched ingest: a list of aggregates is stored in one pipeline (`Store.append_aggregates`),
with one ``WAIT`` per master written, and each item answered as if stored on its own."""
from __future__ import annotations

import json
import time

import pytest

TOPOLOGIES = ("single", "cluster")
NOW_MS = time.time_ns() // 1_000_000
GROUPS = [f"batch-{n}" for n in range(8)]


def aggregate(group: str, epoch: int = 5, round_: int = 1, offset: int = 0) -> dict:
    return {"group": group, "epoch": epoch, "round": round_, "timestamp": NOW_MS + offset, "value": 20.0 + offset,
            "readings": [{"node_id": "n1", "value": 20.0, "measured_at": NOW_MS}], "excluded": []}


def post(client, body):
    return client.post("/api/v1/readings", data=json.dumps(body), content_type="application/json")


class Pipelines:
    """Wraps a client's ``pipeline()`` to keep the commands (name, first argument) each one ran."""

    def __init__(self, client) -> None:
        self.client, self.real, self.ran = client, client.pipeline, []

    def __call__(self, *args, **kwargs):
        return _Counted(self.real(*args, **kwargs), self.ran)

    def appends(self, sha: str) -> list[list[tuple]]:
        return [commands for commands in self.ran if ("EVALSHA", sha) in commands]


class _Counted:
    def __init__(self, pipe, ran: list) -> None:
        self.pipe, self.ran, self.commands = pipe, ran, []

    def execute_command(self, *args, **kwargs):
        self.commands.append(tuple(args[:2]))
        return self.pipe.execute_command(*args, **kwargs)

    def execute(self, *args, **kwargs):
        self.ran.append(self.commands)
        return self.pipe.execute(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.pipe, name)


def test_a_list_over_several_buckets_is_stored_in_one_round_trip(app, client, settings, monkeypatch):
    store = app.extensions["store"]
    assert len({store.keys.bucket(group) for group in GROUPS}) > 1
    assert post(client, [aggregate(group) for group in GROUPS]).status_code == 201  # creates the series
    assert post(client, aggregate(GROUPS[-1], epoch=9, round_=2, offset=1)).status_code == 201
    pipelines = Pipelines(store.client)
    monkeypatch.setattr(store.client, "pipeline", pipelines)
    body = [aggregate(GROUPS[0]), *[aggregate(group, round_=2, offset=2) for group in GROUPS[1:-1]],
            aggregate(GROUPS[-1], epoch=5, round_=3, offset=3), aggregate(GROUPS[1], round_=3, offset=4)]
    answer = post(client, body)
    assert answer.status_code == 409  # one stale item makes the list's answer 409, as before
    statuses = [r["status"] for r in answer.json["results"]]
    assert statuses == ["duplicate", *["stored"] * (len(GROUPS) - 2), "stale", "stored"]
    assert answer.json["results"][-2]["newest_epoch"] == 9
    [appends] = pipelines.appends(store._append.sha)  # one pipeline for every append
    assert appends.count(("EVALSHA", store._append.sha)) == len(body)
    waits = [command for command in appends if command[0] == "WAIT"]
    masters = {store._owner(store.keys.series(group, "readings")) for group in GROUPS}
    assert len(waits) == (len(masters) if settings.storage.redis_wait_replicas else 0)
    if settings.storage.redis_cluster_nodes:
        assert len(masters) > 1
    listed = client.get(f"/listar?sensor={GROUPS[1]}").json["readings"]
    assert [r["value"] for r in listed] == [20.0, 22.0, 24.0]


def test_append_aggregates_answers_each_item_in_order(app):
    store = app.extensions["store"]
    items = [("fresh-a", 2, 1, NOW_MS, 1.0), ("fresh-b", 2, 1, NOW_MS, 2.0), ("fresh-a", 2, 1, NOW_MS, 9.0),
             ("fresh-a", 1, 2, NOW_MS + 5, 3.0), ("fresh-a", 3, 1, NOW_MS + 5, 4.0)]
    stored = store.append_aggregates(items)  # both series are created on the way
    assert [s.status for s in stored] == ["stored", "stored", "duplicate", "stale", "stored"]
    assert stored[2].timestamp == stored[0].timestamp and stored[3].newest_epoch == 2
    assert stored[4].timestamp > stored[0].timestamp
    assert store.group_state("fresh-a")["epoch"] == 3 and store.group_state("fresh-a")["duplicates"] == 1
    assert store.append_aggregates(items[-1:])[0].status == "duplicate"


@pytest.mark.single_redis
def test_a_replica_short_list_is_refused_whole(app, settings):
    """On a server without replicas, ``WAIT 1`` counts none: the list is a 503, retried whole."""
    from webapp import create_app
    from webapp import shutdown

    waiting = create_app(settings.replace(redis_wait_replicas=1, redis_wait_timeout_ms=50))
    try:
        answer = post(waiting.test_client(), [aggregate("short-a"), aggregate("short-b")])
        assert answer.status_code == 503
    finally:
        shutdown(waiting)


def test_a_server_that_lost_its_scripts_still_stores_the_list(app):
    """After ``SCRIPT FLUSH`` (a restart, a failover) the list's scripts answer NOSCRIPT: the
    script is loaded and those items run again, each stored once."""
    store = app.extensions["store"]
    assert [s.status for s in store.append_aggregates([("flushed-a", 1, 1, NOW_MS, 1.0)])] == ["stored"]
    store.client.script_flush()
    items = [("flushed-a", 1, 2, NOW_MS + 1, 2.0), ("flushed-b", 1, 1, NOW_MS, 3.0), ("flushed-a", 1, 2, NOW_MS, 9.0)]
    assert [s.status for s in store.append_aggregates(items)] == ["stored", "stored", "duplicate"]
