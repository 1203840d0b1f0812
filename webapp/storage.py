"""Keys, writes and range reads over RedisTimeSeries: the only module that talks to it.

Every key is built by `Keys`. A reading is stored by one Lua script that gives the sample a
timestamp strictly after the series' newest, so concurrent writers never overwrite each
other; for edge aggregates the same script applies the epoch fence and the
``group:epoch:round`` idempotency check in the same atomic step. A second script creates a
sensor's series (labels, retention, compaction rules) the first time it is written. Needs the
RedisTimeSeries module (1.8 or later).
"""
from __future__ import annotations

import functools
import json
import uuid
from dataclasses import dataclass

import redis

from webapp.config import Settings
from webapp.detection.base import Window
from webapp.detection.seasonal import day_means
from webapp.detection.seasonal import spans
from webapp.detection.vote import Decision
from webapp.errors import NameTaken
from webapp.errors import QuotaReached
from webapp.errors import StoreUnavailable

DAY_MS = 86_400_000
FORGET_PER_CREATE = 10  # idle series a new one clears away first: cleanup keeps pace with growth

# KEYS: readings, fence hash, the set of stored writes (ids), the registry of this kind of
# series (edge groups or plain sensors) and the other kind's.
# ARGV: ts, value, epoch (-1: a plain reading), write id ("epoch:round" of an aggregate, or a
# request id), how long a write id is remembered (ms), the series' name.
#
# A name belongs to one kind of writer: a group's series refuses plain readings and a plain
# sensor's series refuses aggregates ('conflict'). Each registry is a sorted set of names
# scored by their last write (server time, ms), which finds idle series to forget.
#
# `#!lua` (no flags): Redis refuses the whole script up front when it is out of memory, so a
# full server answers an error (503) with nothing half-written. The hot path carries no labels:
# a missing series is answered 'missing' and created by _CREATE, then the append runs again.
# Every write carries an id checked and kept in the same atomic step, so a re-sent script (a
# client retry, or redis-py's own retry after a timeout) is answered 'duplicate' with the
# first write's timestamp instead of storing the reading twice. Ids are one sorted set per
# series (score: the stored timestamp), trimmed to how long they are remembered: the key
# count stays flat however many writes arrive.
_APPEND = """#!lua
local series, fence, done, registry, others = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
if redis.call('ZSCORE', others, ARGV[6]) then return {'conflict', 0} end
if redis.call('EXISTS', series) == 0 then return {'missing', 0} end
local ts = tonumber(ARGV[1])
local epoch = tonumber(ARGV[3])
local member, remember = ARGV[4], tonumber(ARGV[5])
local newest = -1
if epoch >= 0 then
  newest = tonumber(redis.call('HGET', fence, 'epoch') or '-1')
  if epoch < newest then return {'stale', newest} end
end
local prev = redis.call('ZSCORE', done, member)
if prev then
  -- Answered with a write, so WAIT covers the original too and a master without replicas
  -- refuses it: else a retry answered by a paused old master's unreplicated copy is
  -- acknowledged, then lost.
  if epoch >= 0 then redis.call('HINCRBY', fence, 'duplicates', 1) else redis.call('PEXPIRE', done, remember) end
  return {'duplicate', tonumber(prev)}
end
local last = redis.call('TS.GET', series)
if #last == 2 and ts <= tonumber(last[1]) then ts = tonumber(last[1]) + 1 end
redis.call('TS.ADD', series, ts, ARGV[2])
if epoch >= 0 then
  if epoch > newest then redis.call('HSET', fence, 'epoch', epoch) end
  redis.call('HSET', fence, 'round', string.match(member, ':(%d+)$'), 'timestamp', ts)
end
redis.call('ZADD', done, ts, member)
redis.call('ZREMRANGEBYSCORE', done, '-inf', string.format('(%d', ts - remember))
redis.call('PEXPIRE', done, remember)
local now = redis.call('TIME')
redis.call('ZADD', registry, tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000), ARGV[6])
return {'stored', ts}
"""

# KEYS: readings, avg_1m, avg_1h, this kind's registry, the other kind's. ARGV: retention,
# retention_1m, retention_1h, the name, this kind's quota of series (0: none), label pairs.
# Creates the readings series and its compactions (TS.CREATERULE needs both ends to exist)
# and registers it, unless another writer already did, the name belongs to the other kind of
# writer ('conflict') or the quota is reached ('full'). Refused up front when out of memory.
_CREATE = """#!lua
local series, avg1m, avg1h, registry, others = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
if redis.call('ZSCORE', others, ARGV[4]) then return 'conflict' end
if redis.call('EXISTS', series) == 1 then return 'exists' end
local quota = tonumber(ARGV[5])
if quota > 0 and redis.call('ZCARD', registry) >= quota then return 'full' end
local labels = {}
for i = 6, #ARGV do labels[#labels + 1] = ARGV[i] end
redis.call('TS.CREATE', series, 'RETENTION', ARGV[1], 'DUPLICATE_POLICY', 'BLOCK',
           'LABELS', 'kind', 'reading', unpack(labels))
redis.call('TS.CREATE', avg1m, 'RETENTION', ARGV[2], 'LABELS', 'kind', 'reading_avg', 'agg', '1m', unpack(labels))
redis.call('TS.CREATE', avg1h, 'RETENTION', ARGV[3], 'LABELS', 'kind', 'reading_avg', 'agg', '1h', unpack(labels))
redis.call('TS.CREATERULE', series, avg1m, 'AGGREGATION', 'avg', 60000)
redis.call('TS.CREATERULE', series, avg1h, 'AGGREGATION', 'avg', 3600000)
local now = redis.call('TIME')
redis.call('ZADD', registry, tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000), ARGV[4])
return 'created'
"""

# KEYS: a registry, then every key of one idle series. ARGV: its name, the idle cutoff (ms).
# Deletes the series only if it is still idle: a writer that came back in between keeps it.
_FORGET = """#!lua
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end
return 1
"""


@dataclass(frozen=True)
class Stored:
    """What happened to one write: ``stored``, ``duplicate`` (this write id was stored before,
    at `timestamp`) or ``stale`` (an aggregate's epoch is older than `newest_epoch`)."""

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

    def incident(self, subject: str) -> str:
        """The live state of one subject's incidents (a sensor, or ``<group>/<node>``)."""
        return f"{self.prefix}incident:{subject}"

    @property
    def incidents_open(self) -> str:
        return f"{self.prefix}incidents:open"

    def incident_log(self, sensor: str | None = None) -> str:
        """The capped log of closed incidents: of every sensor, or of one `sensor` (and its nodes)."""
        return self.series(sensor, "incidents") if sensor is not None else f"{self.prefix}incidents"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}alerts"

    def registry(self, kind: str) -> str:
        """The names of one kind of series (``groups`` or ``sensors``), scored by last write."""
        return f"{self.prefix}registry:{kind}"

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
        self._forget = client.register_script(_FORGET)

    def _labels(self, sensor: str, **extra: str) -> dict[str, str]:
        return {"app": "aeroguard", "ns": self.keys.namespace, "sensor": sensor, **extra}

    @property
    def _retention_ms(self) -> int:
        return int(self.settings.retention_days * DAY_MS)

    def _run_append(self, name: str, kind: str, ts: int, value: float, keys: list[str], write: tuple) -> Stored:
        series = self.keys.series(name, "readings")
        keys = [series, *keys, *self._registries(kind)]
        args = [ts, repr(float(value)), *write, name]
        status, stamp = self._write(keys=keys, args=args)
        if status == "missing":
            self._create_series(name, kind, series)
            status, stamp = self._write(keys=keys, args=args)
        if status == "conflict":
            raise NameTaken(name, kind)
        if status == "stale":
            return Stored("stale", newest_epoch=int(stamp))
        return Stored(status, int(stamp))

    def _registries(self, kind: str) -> list[str]:
        """This kind's registry and the other kind's (a name belongs to one kind of writer)."""
        other = "sensors" if kind == "groups" else "groups"
        return [self.keys.registry(kind), self.keys.registry(other)]

    def _create_series(self, name: str, kind: str, series: str) -> None:
        labels = [item for pair in self._labels(name).items() for item in pair]
        quota = self.settings.max_sensors if kind == "sensors" else 0
        keys = [series, f"{series}:avg_1m", f"{series}:avg_1h", *self._registries(kind)]
        args = [self._retention_ms, int(self.settings.minute_retention_days * DAY_MS),
                int(self.settings.hour_retention_days * DAY_MS), name, quota, *labels]
        self.forget_idle(kind, limit=FORGET_PER_CREATE)
        outcome = self._create(keys=keys, args=args)
        if outcome == "conflict":
            raise NameTaken(name, kind)
        if outcome == "full":
            raise QuotaReached(f"no new sensor: {quota} sensors are live (MAX_SENSORS); an idle one "
                               f"is forgotten after {self.settings.sensor_idle_days:g} days")

    @_unavailable
    def forget_idle(self, kind: str, limit: int, now_ms: int | None = None) -> list[str]:
        """Delete up to `limit` series of `kind` with no write for ``sensor_idle_days``, with
        every key they have (readings, compactions, scores, votes, verdicts, level, write ids,
        fence). Each one only if it is still idle when deleted; returns the names forgotten."""
        registry = self.keys.registry(kind)
        now_ms = int(self.client.time()[0]) * 1000 if now_ms is None else now_ms
        cutoff = now_ms - int(self.settings.sensor_idle_days * DAY_MS)
        forgotten = []
        for name in self.client.zrangebyscore(registry, "-inf", f"({cutoff}", start=0, num=limit):
            if self._forget(keys=[registry, *self._keys_of(name)], args=[name, cutoff]):
                forgotten.append(name)
        return forgotten

    def _keys_of(self, name: str) -> list[str]:
        """Every key of one series: its labelled TimeSeries (found by label) and the rest."""
        labelled = self.client.ts().queryindex([f"ns={self.keys.namespace}", f"sensor={name}"])
        own = [self.keys.series(name, part) for part in ("readings", "level", "peaks", "writes")]
        events = [self.keys.event_log(kind, name) for kind in ("decision", "sensor_fault")]
        events += [self.keys.incident_log(name), self.keys.incident(name)]
        return sorted({*labelled, *own, *events, self.keys.group(name, "fence"), self.keys.group(name, "done")})

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
    def append_reading(self, sensor: str, ts: int, value: float, write_id: str | None = None) -> Stored:
        """Store one reading at `ts` ms, or just after the series' newest sample if later.

        `write_id` makes the write safe to repeat: the same id again within
        ``idempotency_window_s`` is answered ``Stored("duplicate", ts)`` and stores nothing.
        Without one, a fresh id still guards against the client library re-sending the
        script after a timeout. Raises `NameTaken` for an edge group's name and
        `QuotaReached` when a new sensor would pass ``max_sensors``.
        """
        write = (-1, write_id or uuid.uuid4().hex, int(self.settings.idempotency_window_s * 1000))
        keys = [self.keys.group(sensor, "fence"), self.keys.series(sensor, "writes")]
        return self._run_append(sensor, "sensors", ts, value, keys, write)

    @_unavailable
    def append_aggregate(self, group: str, epoch: int, round_: int, ts: int, value: float) -> Stored:
        """Store an edge aggregate once per ``group:epoch:round``, fenced by epoch.

        Returns ``Stored("stale", newest_epoch=E)`` when `epoch` is older than the newest
        accepted for the group, and ``Stored("duplicate", ts)`` when this round was stored.
        Raises `NameTaken` when plain readings already use the group's name.
        """
        keys = [self.keys.group(group, "fence"), self.keys.group(group, "done")]
        return self._run_append(group, "groups", ts, value, keys, (epoch, f"{epoch}:{round_}", self._retention_ms))

    @_unavailable
    def check_owner(self, names: set[str], kind: str) -> None:
        """Raise `NameTaken` if the other kind of writer owns one of `names` (the append script
        checks it again atomically; this lets a list of aggregates be refused before any is stored)."""
        other = self._registries(kind)[1]
        pipe = self.client.pipeline(transaction=False)
        for name in sorted(names):
            pipe.zscore(other, name)
        for name, score in zip(sorted(names), pipe.execute()):
            if score is not None:
                raise NameTaken(name, kind)

    @_unavailable
    def is_judged(self, sensor: str, ts: int) -> bool:
        """Whether the reading of `sensor` at `ts` has a stored verdict."""
        key = self.keys.series(sensor, "verdict")
        return bool(self.client.exists(key)) and bool(self.client.ts().range(key, ts, ts))

    @_unavailable
    def read_judging_state(self, sensor: str, size: int, end: int | str = "+",
                           seasons: tuple[int, float] | None = None) -> tuple[Window, float | None]:
        """The newest `size` readings of `sensor` up to `end`, oldest first, and the sensor's
        reference level (None before its first decision: `webapp.detection.drift`).

        With `seasons` = ``(days, span_s)`` (and `end` a timestamp) the window also carries the
        sensor's mean reading in the `span_s` ending at the same time on each of the `days`
        days before (`webapp.detection.seasonal`), read from the one-minute compaction.

        One round trip; the window is one ``TS.REVRANGE … COUNT`` call, whose cost does not
        grow with the series' history, and each earlier day one short ``TS.RANGE``.
        """
        pipe = self.client.ts().pipeline(transaction=False)
        pipe.revrange(self.keys.series(sensor, "readings"), "-", end, count=size)
        pipe.execute_command("GET", self.keys.series(sensor, "level"))  # not TS.GET: a plain string
        days = spans(int(end), *seasons) if seasons and end != "+" else []
        for start, stop in days:
            pipe.range(self.keys.series(sensor, "readings", "avg_1m"), start, stop)
        samples, level, *earlier = pipe.execute()
        samples.reverse()
        window = Window(tuple(float(v) for _, v in samples), tuple(int(t) for t, _ in samples), sensor,
                        seasons=day_means([(int(t), float(v)) for t, v in day] for day in earlier))
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
            if ballot.vote is None or ballot.score is None:  # abstained, or nothing to compare with yet
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
