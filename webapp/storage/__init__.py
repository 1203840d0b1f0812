"""Keys, writes and range reads over RedisTimeSeries: the only package that talks to it.

Every key is built by `Keys` (`webapp.storage.keys`). A reading is stored by one Lua script
(`webapp.storage.scripts`) that gives the sample a timestamp strictly after the series' newest,
so concurrent writers never overwrite each other; for edge aggregates the same script applies
the epoch fence and the ``group:epoch:round`` idempotency check in the same atomic step
(`webapp.storage.ingest`). A second script creates a sensor's series (labels, retention,
compaction rules) the first time it is written. Needs the RedisTimeSeries module (1.8 or later).

`Store` is one object made of four parts, one module each: writes (`ingest`), what judging
reads and writes (`state`), reading readings back (`listing`) and the event log (`events`).
"""
from __future__ import annotations

import redis

from webapp.config import Settings
from webapp.storage.base import DAY_MS
from webapp.storage.base import _unavailable
from webapp.storage.events import EventLog
from webapp.storage.ingest import FORGET_PER_CREATE
from webapp.storage.ingest import Ingest
from webapp.storage.ingest import Stored
from webapp.storage.keys import Keys
from webapp.storage.listing import Listing
from webapp.storage.scripts import APPEND
from webapp.storage.scripts import CREATE
from webapp.storage.scripts import FORGET
from webapp.storage.scripts import READ_WRITTEN
from webapp.storage.scripts import RECORD_DECISION
from webapp.storage.scripts import RECORD_EVENTS
from webapp.storage.state import JudgingState

__all__ = ["DAY_MS", "FORGET_PER_CREATE", "Keys", "Store", "Stored"]


class Store(Ingest, JudgingState, Listing, EventLog):
    """Readings, scores, votes, verdicts and decision events of every sensor.

    Parameters
    ----------
    client
        A ``redis.Redis`` with ``decode_responses=True``, connected to a server with the
        RedisTimeSeries module.
    settings
        Key prefix, retentions and the event log's length.
    """

    def __init__(self, client: redis.Redis, settings: Settings):
        self.client = client
        self.settings = settings
        self.keys = Keys(settings.storage.key_prefix, settings.storage.key_buckets)
        client.ts()  # registers the TimeSeries reply parsers, so raw TS.MGET answers as ts().mget does
        self._append = client.register_script(APPEND)
        self._create = client.register_script(CREATE)
        self._forget = client.register_script(FORGET)
        self._record_decision = client.register_script(RECORD_DECISION)
        self._record_events = client.register_script(RECORD_EVENTS)
        self._read_written = client.register_script(READ_WRITTEN)

    @_unavailable
    def ping(self) -> bool:
        return bool(self.client.ping())

    @_unavailable
    def has_timeseries(self) -> bool:
        """Whether the server has the RedisTimeSeries module loaded."""
        return any(m.get("name") == "timeseries" for m in self.client.module_list())
