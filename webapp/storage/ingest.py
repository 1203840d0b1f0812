"""Writes: readings and edge aggregates stored once each (write ids, the epoch fence), the
series created on first write within the sensor quota, and idle series forgotten."""
from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import TypeAlias

import redis

from webapp.errors import NameTaken
from webapp.errors import QuotaReached
from webapp.errors import StoreUnavailable
from webapp.storage.base import DAY_MS
from webapp.storage.base import ScriptCall
from webapp.storage.base import StoreBase
from webapp.storage.base import _unavailable
from webapp.storage.base import executed
from webapp.storage.base import raise_first_error
from webapp.storage.scripts import APPEND

Aggregate: TypeAlias = tuple[str, int, int, int, float]  # group, epoch, round, ts (ms), value
FORGET_PER_CREATE = 10  # idle series a new one clears away first: cleanup keeps pace with growth


@dataclass(frozen=True)
class Stored:
    """What happened to one write: ``stored``, ``duplicate`` (this write id was stored before,
    at `timestamp`) or ``stale`` (an aggregate's epoch is older than `newest_epoch`); `judging`:
    what judging the reading at `timestamp` needs, when it was read with the write."""

    status: str
    timestamp: int | None = None
    newest_epoch: int | None = None
    judging: tuple | None = field(default=None, compare=False, repr=False)


class Ingest(StoreBase):
    """The write side of `webapp.storage.Store` (its scripts are registered by the store)."""

    def _run_append(self, name: str, kind: str, ts: int, value: float, keys: list[str], write: tuple,
                    read: Sequence[ScriptCall] = ()) -> Stored:
        series = self.keys.series(name, "readings")
        keys = [series, *keys, *self._registries(kind, name)]
        args = [ts, repr(float(value)), *write, name]
        (status, stamp), replies = self._write(keys=keys, args=args, read=read)
        if status == "missing":
            self._create_series(name, kind, series)
            (status, stamp), replies = self._write(keys=keys, args=args, read=read)
        if status == "conflict":
            raise NameTaken(name, kind)
        if status == "stale":
            return Stored("stale", newest_epoch=int(stamp))
        return Stored(status, int(stamp), judging=self._read_written_reply(name, replies[0]) if replies else None)

    def _create_series(self, name: str, kind: str, series: str) -> None:
        labels = [item for pair in self._labels(name).items() for item in pair]
        # MAX_SENSORS is enforced per bucket (a share, rounded up) so that the check stays in the
        # script's one slot: a new sensor may be refused while other buckets still have room.
        quota = self.keys.share(self.settings.limits.max_sensors) if kind == "sensors" else 0
        keys = [series, f"{series}:avg_1m", f"{series}:avg_1h", *self._registries(kind, name)]
        args = [self._retention_ms, int(self.settings.retention.minute_retention_days * DAY_MS),
                int(self.settings.retention.hour_retention_days * DAY_MS), name, quota, *labels]
        self.forget_idle(kind, limit=FORGET_PER_CREATE, bucket=self.keys.bucket(name))
        outcome = self._create(keys=keys, args=args)
        if outcome == "conflict":
            raise NameTaken(name, kind)
        if outcome == "full":
            raise QuotaReached(f"no new sensor: {quota} sensors are live in its bucket of {self.keys.buckets} "
                               f"(MAX_SENSORS {self.settings.limits.max_sensors} shared by buckets); an idle "
                               f"one is forgotten after {self.settings.retention.sensor_idle_days:g} days")

    @_unavailable
    def forget_idle(self, kind: str, limit: int, now_ms: int | None = None, bucket: int | None = None) -> list[str]:
        """Delete up to `limit` series of `kind` with no write for ``sensor_idle_days``, with
        every key they have (readings, compactions, scores, votes, verdicts, level, write ids,
        fence). Each one only if it is still idle when deleted; returns the names forgotten.
        Looks in one `bucket` (`Keys.bucket`), or in every bucket when None."""
        forgotten: list[str] = []
        for each in self.keys.all_buckets if bucket is None else (bucket,):
            registry = self.keys.registry(kind, each)
            now = int(self._at(registry, "TIME")[0]) * 1000 if now_ms is None else now_ms
            cutoff = now - int(self.settings.retention.sensor_idle_days * DAY_MS)
            for name in self.client.zrangebyscore(registry, "-inf", f"({cutoff}", start=0, num=limit - len(forgotten)):
                if self._forget(keys=[registry, *self._keys_of(name)], args=[name, cutoff]):
                    forgotten.append(name)
            if len(forgotten) >= limit:
                break
        return forgotten

    def _keys_of(self, name: str) -> list[str]:
        """Every key of one series: its labelled TimeSeries and the rest. The labelled series
        are found by label on the server holding the name's slot, where all of them live."""
        readings = self.keys.series(name, "readings")
        labelled = self._at(readings, "TS.QUERYINDEX", f"ns={self.keys.namespace}", f"sensor={name}")
        own = [self.keys.series(name, part) for part in ("readings", "level", "peaks", "writes")]
        events = [self.keys.sensor_events(name, kind) for kind in ("decision", "sensor_fault")]
        events += [self.keys.sensor_incidents(name), self.keys.incident(name)]
        return sorted({*labelled, *own, *events, self.keys.group(name, "fence"), self.keys.group(name, "done")})

    def _write(self, keys: list[str], args: list, read: Sequence[ScriptCall] = ()) -> tuple[list, list]:
        """Run the append script; with ``wait_replicas``, acknowledge only once replicas have it.
        Then, in the same round trip, the read-only scripts `read`; returns the append's answer
        and theirs (None for one that failed: the caller reads again on its own).

        ``WAIT`` goes in the same non-transactional pipeline as the script, so it runs on the
        connection that wrote and covers exactly this write (Sentinel keeps no acknowledged
        write through a failover otherwise: docs/reliability.md).
        """
        wanted = self.settings.storage.redis_wait_replicas
        if not wanted and not read:
            return self._append(keys=keys, args=args), []

        def write_and_wait() -> tuple[list, str | None]:
            owner = self._owner(keys[0])
            pipe = self.client.pipeline(transaction=False)
            pipe.execute_command("EVALSHA", self._append.sha, len(keys), *keys, *args)
            if wanted:
                self._wait_on(pipe, keys[0])
            for script, read_keys, read_args in read:
                pipe.execute_command("EVALSHA", script.sha, len(read_keys), *read_keys, *read_args)
            return pipe.execute(raise_on_error=False), owner

        replies, owner = write_and_wait()
        if isinstance(replies[0], redis.exceptions.NoScriptError):
            self.client.script_load(APPEND)
            replies, owner = write_and_wait()
        result, acked, answers = replies[0], replies[1] if wanted else None, replies[1 + bool(wanted):]
        raise_first_error([result, acked])
        if wanted and result[0] in ("stored", "duplicate") and int(acked) < wanted:
            raise StoreUnavailable(f"write reached {acked} of {wanted} replica(s) in time: retry")
        if wanted and owner != self._owner(keys[0]):
            # The slot moved while the write was redirected: WAIT counted another node's replicas.
            raise StoreUnavailable("the key's slot moved during the write: retry")
        for (script, _, _), answer in zip(read, answers):
            if isinstance(answer, redis.exceptions.NoScriptError):
                self.client.script_load(script.script)  # for the next write; this one reads again
        return result, [None if isinstance(answer, Exception) else answer for answer in answers]

    @_unavailable
    def append_reading(self, sensor: str, ts: int, value: float, write_id: str | None = None,
                       judging: int = 0) -> Stored:
        """Store one reading at `ts` ms, or just after the series' newest sample if later.

        `write_id` makes the write safe to repeat: the same id again within
        ``idempotency_window_s`` is answered ``Stored("duplicate", ts)`` and stores nothing.
        Without one, a fresh id still guards against the client library re-sending the
        script after a timeout. Raises `NameTaken` for an edge group's name and
        `QuotaReached` when a new sensor would pass ``max_sensors``. With `judging` readings,
        the same round trip also reads what judging the stored reading needs, its newest
        `judging` readings (``Stored.judging``, as `read_for_judging` answers).
        """
        write = (-1, write_id or uuid.uuid4().hex, int(self.settings.retention.idempotency_window_s * 1000))
        keys = [self.keys.group(sensor, "fence"), self.keys.series(sensor, "writes")]
        read = [self._read_written_call(sensor, judging, write[1])] if judging else []
        return self._run_append(sensor, "sensors", ts, value, keys, write, read)

    @_unavailable
    def append_aggregate(self, group: str, epoch: int, round_: int, ts: int, value: float) -> Stored:
        """Store an edge aggregate once per ``group:epoch:round``, fenced by epoch.

        Returns ``Stored("stale", newest_epoch=E)`` when `epoch` is older than the newest
        accepted for the group, and ``Stored("duplicate", ts)`` when this round was stored.
        Raises `NameTaken` when plain readings already use the group's name.
        """
        return self.append_aggregates([(group, epoch, round_, ts, value)])[0]

    @_unavailable
    def append_aggregates(self, items: Sequence[Aggregate]) -> list[Stored]:
        """Store edge aggregates, each ``(group, epoch, round, ts, value)`` as `append_aggregate`
        does, in one round trip: a pipeline of their append scripts, in order, then one ``WAIT``
        per master written (`_append_batch`). Answers per item, in order. A group's first
        aggregate finds no series: it is created and that group's items run again, as do items
        the server had no script for. Raises `NameTaken` (the first item whose name plain
        readings use) after the whole list ran: the other items are stored, unjudged.
        """
        window = self._retention_ms
        calls = []
        for group, epoch, round_, ts, value in items:
            keys = [self.keys.series(group, "readings"), self.keys.group(group, "fence"),
                    self.keys.group(group, "done"), *self._registries("groups", group)]
            calls.append((keys, [ts, repr(float(value)), epoch, f"{epoch}:{round_}", window, group]))
        replies: list = [None] * len(calls)
        pending = list(range(len(calls)))
        for _ in range(3):  # at most: a script loaded, then series created
            for i, reply in zip(pending, self._append_batch([calls[i] for i in pending])):
                replies[i] = reply
            missing = {items[i][0] for i in pending if not isinstance(replies[i], Exception)
                       and replies[i][0] == "missing"}
            if any(isinstance(replies[i], redis.exceptions.NoScriptError) for i in pending):
                self.client.script_load(APPEND)
            elif missing:
                for group in sorted(missing):
                    self._create_series(group, "groups", self.keys.series(group, "readings"))
            else:
                break
            pending = [i for i in pending if isinstance(replies[i], Exception) or replies[i][0] == "missing"]
        raise_first_error(replies)
        for (group, *_), (status, _) in zip(items, replies):
            if status == "conflict":
                raise NameTaken(group, "groups")
        return [Stored("stale", newest_epoch=int(stamp)) if status == "stale" else Stored(status, int(stamp))
                for status, stamp in replies]

    def _append_batch(self, calls: list[tuple[list, list]]) -> list:
        """Run the append script once per call (KEYS, ARGV) in one non-transactional pipeline;
        with ``wait_replicas``, one ``WAIT`` per master written, queued after its writes on the
        connection that sent them (`_wait_on`: one on one Redis). Returns the scripts' replies,
        a ``NoScriptError`` standing for one that did not run; raises any other error, and
        `StoreUnavailable` when a master's replicas did not acknowledge in time or a key's slot
        moved during the write (that ``WAIT`` counted another node's replicas)."""
        wanted = self.settings.storage.redis_wait_replicas
        pipe = self.client.pipeline(transaction=False)
        for keys, args in calls:
            pipe.execute_command("EVALSHA", self._append.sha, len(keys), *keys, *args)
        owners = [self._owner(keys[0]) for keys, _ in calls]
        masters = {owner: keys[0] for owner, (keys, _) in zip(owners, calls)} if wanted else {}
        for key in masters.values():
            self._wait_on(pipe, key)
        replies = pipe.execute(raise_on_error=False)
        results, acks = replies[:len(calls)], replies[len(calls):]
        raise_first_error([r for r in results if not isinstance(r, redis.exceptions.NoScriptError)] + acks)
        if not wanted:
            return results
        for (owner, key), acked in zip(masters.items(), acks):
            written = [r for o, r in zip(owners, results) if o == owner and isinstance(r, list)]
            if int(acked) < wanted and any(r[0] in ("stored", "duplicate") for r in written):
                raise StoreUnavailable(f"write reached {acked} of {wanted} replica(s) in time: retry")
        if owners != [self._owner(keys[0]) for keys, _ in calls]:
            raise StoreUnavailable("a key's slot moved during the write: retry")
        return results

    @_unavailable
    def check_owner(self, names: set[str], kind: str) -> None:
        """Raise `NameTaken` if the other kind of writer owns one of `names` (the append script
        checks it again atomically; this lets a list of aggregates be refused before any is stored)."""
        pipe = self.client.pipeline(transaction=False)
        for name in sorted(names):
            pipe.zscore(self._registries(kind, name)[1], name)
        for name, score in zip(sorted(names), executed(pipe)):
            if score is not None:
                raise NameTaken(name, kind)

    @_unavailable
    def group_state(self, group: str) -> dict:
        """The fence of an edge group: newest accepted epoch, last round and its timestamp,
        and how many retries were answered as duplicates."""
        state = self.client.hgetall(self.keys.group(group, "fence"))
        return {k: int(v) for k, v in state.items()}
