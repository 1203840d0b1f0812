"""Keys, writes and range reads over RedisTimeSeries: the only module that talks to it.

Every key is built by `Keys`. A reading is stored by one Lua script that gives the sample a
timestamp strictly after the series' newest, so concurrent writers never overwrite each
other; for edge aggregates the same script applies the epoch fence and the
``group:epoch:round`` idempotency check in the same atomic step. A second script creates a
sensor's series (labels, retention, compaction rules) the first time it is written. Needs the RedisTimeSeries module (1.8 or later).
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import redis

from webapp.config import Settings
from webapp.detection.base import Window
from webapp.detection.vote import Decision
from webapp.errors import StoreUnavailable

DAY_MS = 86_400_000

# KEYS: readings, fence hash, the group's set of stored rounds.
# ARGV: ts, value, epoch (-1: a plain reading), round, how long a round is remembered (ms).
# The hot path carries no labels: a missing series is answered 'missing' and created by
# _CREATE, then the append runs again. Stored rounds are one sorted set per group (member
# "epoch:round", score the stored timestamp), trimmed to the retention: the key count stays
# flat however many rounds arrive, and a retry is recognised as long as its sample can exist.
_APPEND = """
local series, fence, done = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', series) == 0 then return {'missing', 0} end
local ts = tonumber(ARGV[1])
local epoch = tonumber(ARGV[3])
local member = ARGV[3] .. ':' .. ARGV[4]
if epoch >= 0 then
  local newest = tonumber(redis.call('HGET', fence, 'epoch') or '-1')
  if epoch < newest then return {'stale', newest} end
  local prev = redis.call('ZSCORE', done, member)
  if prev then
    -- Counted with a write, so WAIT covers the original too and a master without replicas
    -- refuses it: else a retry answered by a paused old master's unreplicated copy is
    -- acknowledged, then lost.
    redis.call('HINCRBY', fence, 'duplicates', 1)
    return {'duplicate', tonumber(prev)}
  end
end
local last = redis.call('TS.GET', series)
if #last == 2 and ts <= tonumber(last[1]) then ts = tonumber(last[1]) + 1 end
redis.call('TS.ADD', series, ts, ARGV[2])
if epoch >= 0 then
  if epoch > tonumber(redis.call('HGET', fence, 'epoch') or '-1') then
    redis.call('HSET', fence, 'epoch', epoch)
  end
  redis.call('HSET', fence, 'round', ARGV[4], 'timestamp', ts)
  redis.call('ZADD', done, ts, member)
  redis.call('ZREMRANGEBYSCORE', done, '-inf', string.format('(%d', ts - tonumber(ARGV[5])))
  redis.call('PEXPIRE', done, ARGV[5])
end
return {'stored', ts}
"""

# KEYS: readings, avg_1m, avg_1h. ARGV: retention, retention_1m, retention_1h, label pairs.
# Creates the readings series and its compactions (TS.CREATERULE needs both ends to exist),
# unless another writer already did.
_CREATE = """
local series, avg1m, avg1h = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', series) == 1 then return 0 end
local labels = {}
for i = 4, #ARGV do labels[#labels + 1] = ARGV[i] end
redis.call('TS.CREATE', series, 'RETENTION', ARGV[1], 'DUPLICATE_POLICY', 'BLOCK',
           'LABELS', 'kind', 'reading', unpack(labels))
redis.call('TS.CREATE', avg1m, 'RETENTION', ARGV[2], 'LABELS', 'kind', 'reading_avg', 'agg', '1m', unpack(labels))
redis.call('TS.CREATE', avg1h, 'RETENTION', ARGV[3], 'LABELS', 'kind', 'reading_avg', 'agg', '1h', unpack(labels))
redis.call('TS.CREATERULE', series, avg1m, 'AGGREGATION', 'avg', 60000)
redis.call('TS.CREATERULE', series, avg1h, 'AGGREGATION', 'avg', 3600000)
return 1
"""


@dataclass(frozen=True)
class Stored:
    """What happened to one write: ``stored``, ``duplicate`` or ``stale``."""

    status: str
    timestamp: int | None = None
    newest_epoch: int | None = None


class Keys:
    """Builds every Redis key of one namespace (`prefix`)."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def series(self, sensor: str, *parts: str) -> str:
        return ":".join((f"{self.prefix}s", sensor, *parts))

    def sensor_of(self, key: str) -> str:
        """The sensor of a key built by `series`: ``<prefix>s:<sensor>:…`` (ids have no colon)."""
        return key[len(self.prefix) + 2:].split(":", 1)[0]

    def group(self, group: str, *parts: str) -> str:
        return ":".join((f"{self.prefix}g", group, *parts))

    def event_log(self, kind: str, sensor: str | None = None) -> str:
        """The capped stream of one kind of event (``decision`` or ``sensor_fault``): of every
        sensor, or of one `sensor` only. Decisions keep the original ``<prefix>events`` key."""
        if sensor is not None:
            return self.series(sensor, "events", kind)
        return f"{self.prefix}events" if kind == "decision" else f"{self.prefix}events:{kind}"

    @property
    def namespace(self) -> str:
        """The label value that tells this namespace's series apart in ``TS.MRANGE`` filters."""
        return self.prefix.strip(":").replace(":", "-") or "default"


def _unavailable(method):
    """Translate Redis failures into `StoreUnavailable` (answered 503, retried by clients)."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except redis.RedisError as exc:
            raise StoreUnavailable(f"storage unavailable: {exc.__class__.__name__}") from exc

    return wrapper


class Store:
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
        self.keys = Keys(settings.key_prefix)
        self._append = client.register_script(_APPEND)
        self._create = client.register_script(_CREATE)

    def _labels(self, sensor: str, **extra: str) -> dict[str, str]:
        return {"app": "aeroguard", "ns": self.keys.namespace, "sensor": sensor, **extra}

    @property
    def _retention_ms(self) -> int:
        return int(self.settings.retention_days * DAY_MS)

    def _run_append(self, sensor: str, ts: int, value: float, keys: list[str], fence: tuple) -> Stored:
        series = self.keys.series(sensor, "readings")
        args = [ts, repr(float(value)), *fence]
        status, stamp = self._write(keys=[series, *keys], args=args)
        if status == "missing":
            self._create_series(sensor, series)
            status, stamp = self._write(keys=[series, *keys], args=args)
        if status == "stale":
            return Stored("stale", newest_epoch=int(stamp))
        return Stored(status, int(stamp))

    def _create_series(self, sensor: str, series: str) -> None:
        labels = [item for pair in self._labels(sensor).items() for item in pair]
        args = [self._retention_ms, int(self.settings.minute_retention_days * DAY_MS),
                int(self.settings.hour_retention_days * DAY_MS), *labels]
        self._create(keys=[series, f"{series}:avg_1m", f"{series}:avg_1h"], args=args)

    def _write(self, keys: list[str], args: list) -> list:
        """Run the append script; with ``wait_replicas``, acknowledge only once replicas have it.

        ``WAIT`` goes in the same non-transactional pipeline as the script, so it runs on the
        connection that wrote and covers exactly this write (Sentinel keeps no acknowledged
        write through a failover otherwise: RELIABILITY.md).
        """
        wanted = self.settings.redis_wait_replicas
        if not wanted:
            return self._append(keys=keys, args=args)

        def write_and_wait() -> list:
            pipe = self.client.pipeline(transaction=False)
            pipe.evalsha(self._append.sha, len(keys), *keys, *args)
            pipe.execute_command("WAIT", wanted, self.settings.redis_wait_timeout_ms)
            return pipe.execute()

        try:
            result, acked = write_and_wait()
        except redis.exceptions.NoScriptError:
            self.client.script_load(_APPEND)
            result, acked = write_and_wait()
        if result[0] in ("stored", "duplicate") and int(acked) < wanted:
            raise StoreUnavailable(f"write reached {acked} of {wanted} replica(s) in time: retry")
        return result

    @_unavailable
    def append_reading(self, sensor: str, ts: int, value: float) -> Stored:
        """Store one reading at `ts` ms, or just after the series' newest sample if later."""
        fence_key = self.keys.group(sensor, "fence")
        return self._run_append(sensor, ts, value, [fence_key, fence_key], (-1, 0, 0))

    @_unavailable
    def append_aggregate(self, group: str, epoch: int, round_: int, ts: int, value: float) -> Stored:
        """Store an edge aggregate once per ``group:epoch:round``, fenced by epoch.

        Returns ``Stored("stale", newest_epoch=E)`` when `epoch` is older than the newest
        accepted for the group, and ``Stored("duplicate", ts)`` when this round was stored.
        """
        keys = [self.keys.group(group, "fence"), self.keys.group(group, "done")]
        return self._run_append(group, ts, value, keys, (epoch, round_, self._retention_ms))

    @_unavailable
    def read_judging_state(self, sensor: str, size: int, end: int | str = "+") -> tuple[Window, float | None]:
        """The newest `size` readings of `sensor` up to `end`, oldest first, and the sensor's
        reference level (None before its first decision: `webapp.detection.drift`).

        One round trip; the window is one ``TS.REVRANGE … COUNT`` call, whose cost does not
        grow with the series' history.
        """
        pipe = self.client.ts().pipeline(transaction=False)
        pipe.revrange(self.keys.series(sensor, "readings"), "-", end, count=size)
        pipe.execute_command("GET", self.keys.series(sensor, "level"))  # not TS.GET: a plain string
        samples, level = pipe.execute()
        samples.reverse()
        window = Window(tuple(float(v) for _, v in samples), tuple(int(t) for t, _ in samples), sensor)
        return window, None if level is None else float(level)

    @_unavailable
    def read_range(self, sensor: str, start: int | str, end: int | str, count: int,
                   latest: bool = False) -> list[tuple[int, float]]:
        """Readings between `start` and `end` (ms or ``-``/``+``), in time order, at most `count`.

        With `latest`, the newest `count` of the range; otherwise the oldest (for paging).
        """
        key = self.keys.series(sensor, "readings")
        if not self.client.exists(key):
            return []
        ts = self.client.ts()
        if latest:
            samples = ts.revrange(key, start, end, count=count)
            samples.reverse()
        else:
            samples = ts.range(key, start, end, count=count)
        return [(int(t), float(v)) for t, v in samples]

    @_unavailable
    def record_decision(self, sensor: str, ts: int, decision: Decision, level: float | None = None) -> None:
        """Store each ballot's score and vote and the verdict at the reading's timestamp, and
        the sensor's reference level after it (`level`, when the panel follows one)."""
        ts_pipe = self.client.ts().pipeline(transaction=False)
        if level is not None:
            ts_pipe.set(self.keys.series(sensor, "level"), repr(float(level)), px=self._retention_ms)
        retention = self._retention_ms
        for ballot in decision.ballots:
            if ballot.vote is None:
                continue
            labels = self._labels(sensor, detector=ballot.detector)
            ts_pipe.add(self.keys.series(sensor, "score", ballot.detector), ts, ballot.score,
                        retention_msecs=retention, on_duplicate="last", labels={**labels, "kind": "score"})
            ts_pipe.add(self.keys.series(sensor, "vote", ballot.detector), ts, int(ballot.vote),
                        retention_msecs=retention, on_duplicate="last", labels={**labels, "kind": "vote"})
        ts_pipe.add(self.keys.series(sensor, "verdict"), ts, decision.level, retention_msecs=retention,
                    on_duplicate="last", labels=self._labels(sensor, kind="verdict"))
        ts_pipe.execute()

    @_unavailable
    def sensors(self, count: int, after: str = "") -> tuple[list[dict], bool]:
        """A page of this namespace's sensors in id order: the first `count` after `after`, each
        with its newest reading and verdict, and whether more follow.

        The sensors' names come from the index alone (``TS.QUERYINDEX``, no samples read); the
        newest samples only of the page's sensors (``TS.MGET … sensor=(a,b,…)``).
        """
        ts = self.client.ts()
        names = sorted(self.keys.sensor_of(key) for key in ts.queryindex([f"ns={self.keys.namespace}", "kind=reading"]))
        page = [name for name in names if name > after][:count + 1]
        more, page = len(page) > count, page[:count]
        if not page:
            return [], False
        found = {name: {"sensor": name} for name in page}
        pipe = ts.pipeline(transaction=False)
        for kind in ("reading", "verdict"):
            pipe.mget([f"ns={self.keys.namespace}", f"kind={kind}", f"sensor=({','.join(page)})"], with_labels=True)
        for kind, entries in zip(("reading", "verdict"), pipe.execute()):
            for entry in entries:
                (_, (labels, stamp, value)), = entry.items()
                if stamp is not None and labels["sensor"] in found:
                    found[labels["sensor"]][kind] = {"timestamp": int(stamp), "value": float(value)}
        return [found[name] for name in page], more

    @_unavailable
    def latest_ballots(self, sensor: str) -> dict[str, dict]:
        """The newest stored score and vote of each detector of `sensor`."""
        ballots: dict[str, dict] = {}
        for kind in ("score", "vote"):
            filters = [f"ns={self.keys.namespace}", f"sensor={sensor}", f"kind={kind}"]
            for entry in self.client.ts().mget(filters, with_labels=True):
                (_, (labels, ts, value)), = entry.items()
                if ts is not None:
                    ballot = ballots.setdefault(labels["detector"], {})
                    ballot[kind] = bool(value) if kind == "vote" else float(value)
                    ballot["timestamp"] = max(int(ts), ballot.get("timestamp", 0))
        return ballots

    @_unavailable
    def recent(self, sensor: str, count: int) -> list[dict]:
        """The newest `count` readings, oldest first, each with its verdict if it was judged."""
        readings = self.read_range(sensor, "-", "+", count, latest=True)
        if not readings:
            return []
        verdict_key = self.keys.series(sensor, "verdict")
        verdicts = {}
        if self.client.exists(verdict_key):
            verdicts = {int(t): int(float(v)) for t, v in self.client.ts().range(verdict_key, readings[0][0], "+")}
        return [{"timestamp": t, "value": v, "verdict": verdicts.get(t)} for t, v in readings]

    # The event log: one capped stream per kind (decisions never pushed out by sensor-fault
    # noise) and, written in the same atomic step, a copy in the sensor's own capped stream of
    # that kind (``?sensor=`` reads it instead of scanning every sensor's events), under the
    # same id, expiring with the sensor's readings.
    # KEYS: for each event, its kind's stream then the sensor's stream of that kind.
    # ARGV: cap of a kind's stream, cap of a sensor's stream, a sensor's stream lifetime (ms),
    # then each event's JSON.
    EVENTS_READ_MAX = 1000  # the most events one read returns, and what a sensor's stream keeps
    EVENT_KINDS = ("decision", "sensor_fault")
    _RECORD_EVENTS = """
local ids = {}
for i = 4, #ARGV do
  local log, own = KEYS[2 * (i - 3) - 1], KEYS[2 * (i - 3)]
  local id = redis.call('XADD', log, 'MAXLEN', '~', ARGV[1], '*', 'event', ARGV[i])
  local copy = redis.pcall('XADD', own, 'MAXLEN', '~', ARGV[2], id, 'event', ARGV[i])
  if type(copy) == 'table' and copy.err then  -- the kind's stream was reset: a fresh id
    redis.call('XADD', own, 'MAXLEN', '~', ARGV[2], '*', 'event', ARGV[i])
  end
  redis.call('PEXPIRE', own, ARGV[3])
  ids[#ids + 1] = id
end
return ids
"""

    @_unavailable
    def record_events(self, events: list[dict]) -> list[str]:
        """Append decision or sensor-fault events (each with its ``kind`` and ``sensor``) to the
        bounded event log, in one round trip; returns their ids."""
        if not events:
            return []
        keys = [key for event in events for key in (self.keys.event_log(event["kind"]),
                                                     self.keys.event_log(event["kind"], event["sensor"]))]
        args = [self.settings.events_max, self.EVENTS_READ_MAX, self._retention_ms,
                *(json.dumps(event, sort_keys=True) for event in events)]
        return self.client.register_script(self._RECORD_EVENTS)(keys=keys, args=args)

    def record_event(self, event: dict) -> str:
        """Append one decision or sensor-fault event to the bounded event log; returns its id."""
        return self.record_events([event])[0]

    @_unavailable
    def read_events(self, count: int, sensor: str | None = None, kind: str | None = None) -> list[dict]:
        """The newest events first, at most `count` (up to `EVENTS_READ_MAX`), optionally of
        one sensor or kind: reads only the streams asked for (a sensor's own), never a scan."""
        count = min(count, self.EVENTS_READ_MAX)
        found: list[dict] = []
        for each in (kind,) if kind else self.EVENT_KINDS:
            found += self._newest_events(self.keys.event_log(each, sensor), each, count)
        found.sort(key=lambda event: tuple(int(part) for part in event["id"].split("-")), reverse=True)
        return found[:count]

    def _newest_events(self, key: str, kind: str, count: int) -> list[dict]:
        """The newest `count` events of `kind` in the stream `key`. The decision stream also holds
        the sensor faults written before they had their own stream: skipped, a page at a time."""
        found: list[dict] = []
        last = "+"
        while len(found) < count:
            batch = self.client.xrevrange(key, max=last, min="-", count=count)
            for entry_id, fields in batch:
                event = json.loads(fields["event"])
                if event.get("kind") == kind:
                    found.append({"id": entry_id, **event})
            if len(batch) < count:
                break
            last = "(" + batch[-1][0]
        return found[:count]

    @_unavailable
    def group_state(self, group: str) -> dict:
        """The fence of an edge group: newest accepted epoch, last round and its timestamp,
        and how many retries were answered as duplicates."""
        state = self.client.hgetall(self.keys.group(group, "fence"))
        return {k: int(v) for k, v in state.items()}

    @_unavailable
    def ping(self) -> bool:
        return bool(self.client.ping())

    @_unavailable
    def has_timeseries(self) -> bool:
        """Whether the server has the RedisTimeSeries module loaded."""
        return any(m.get("name") == "timeseries" for m in self.client.module_list())
