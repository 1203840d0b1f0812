"""Incidents and webhook alerts: one alert per incident, re-sent on escalation and recovery.

A verdict describes one reading; an incident describes a fault. An incident of a sensor opens
at its first critical verdict, escalates when more detectors vote than before, and closes
after ``WINDOW_SIZE`` non-critical readings in a row. An excluded edge node (a sensor fault)
is an incident of its own subject ``<group>/<node>``, closed after the same number of rounds
without an exclusion. Incident state lives in Redis and is changed by one Lua script, so five
replicas judging one sensor agree on what is new.

Alerts are appended to a Redis stream (one per key bucket: `webapp.storage.keys`) and delivered
by a `Notifier` thread in every worker, reading every bucket's stream through a consumer group
of its own: an alert survives the death of the worker that raised it
(its pending entry is claimed by another), each URL gets it once (delivered URLs are
recorded), failures are retried with backoff, and a receiver that is down for a while gets
the alert when it is back. Opening alerts of one subject are rate-limited
(``ALERT_MIN_INTERVAL_S``): a flapping sensor does not page anyone every minute.
"""
from __future__ import annotations

import json
import logging
import os
import threading

import redis
import requests

from webapp import metrics
from webapp.config import AlertSettings
from webapp.storage.base import ScriptCall
from webapp.storage.base import _unavailable
from webapp.storage.base import executed
from webapp.storage.base import raise_first_error
from webapp.storage.keys import Keys

log = logging.getLogger(__name__)

# KEYS: incident hash, the set of open incidents, the incident log (those two of the subject's
# key bucket), the sensor's incident log.
# ARGV: alarm (0/1), votes, now ms, calm readings to close, min interval ms, subject, value,
# how far the value lies from its reference, the voting detectors (comma-separated), kind,
# how long a quiet subject's state is kept (ms), the logs' lengths (global, per sensor).
# Returns {transition, incident id, quiet}: transition is opened|escalated|closed|ongoing|none.
# An incident keeps its start, its peak (the reading with the most votes, then the farthest
# from its reference), every detector that voted and its alarm count; when it closes, that
# record is appended to the incident logs, so the log holds one entry per incident, not a row
# per reading.
_INCIDENT = """
local h, open_set, log, sensor_log = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local alarm, votes, now = ARGV[1] == '1', tonumber(ARGV[2]), tonumber(ARGV[3])
local subject, value, deviation = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
local open = redis.call('HGET', h, 'open') == '1'
local function kept(...)  -- every answer renews the subject's state for ARGV[11] ms
  redis.call('PEXPIRE', h, ARGV[11])
  return {...}
end
local function note(fresh)
  local best_votes = tonumber(redis.call('HGET', h, 'peak_votes') or '-1')
  local best_dev = tonumber(redis.call('HGET', h, 'peak_deviation') or '-1')
  if fresh or votes > best_votes or (votes == best_votes and deviation > best_dev) then
    redis.call('HSET', h, 'peak_votes', votes, 'peak_deviation', deviation, 'peak_value', value, 'peak_at', now)
  end
  for name in string.gmatch(ARGV[9], '[^,]+') do
    local seen = redis.call('HGET', h, 'detectors') or ''
    if not string.find(',' .. seen .. ',', ',' .. name .. ',', 1, true) then
      redis.call('HSET', h, 'detectors', seen == '' and name or (seen .. ',' .. name))
    end
  end
  redis.call('HINCRBY', h, 'alarms', 1)
  redis.call('HSET', h, 'last_alarm_at', now)
end
if alarm then
  if not open then
    local id = redis.call('HINCRBY', h, 'seq', 1)
    local last = tonumber(redis.call('HGET', h, 'last_alert') or '-1e18')
    local quiet = (now - last) < tonumber(ARGV[5]) and 1 or 0
    if quiet == 0 then redis.call('HSET', h, 'last_alert', now) end
    redis.call('HSET', h, 'open', '1', 'opened_at', now, 'max_votes', votes, 'calm', 0, 'quiet', quiet,
               'kind', ARGV[10], 'subject', subject, 'detectors', '', 'alarms', 0)
    note(true)
    redis.call('SADD', open_set, subject)
    return kept('opened', id, quiet)
  end
  local id = tonumber(redis.call('HGET', h, 'seq'))
  local quiet = tonumber(redis.call('HGET', h, 'quiet'))
  redis.call('HSET', h, 'calm', 0)
  note(false)
  if votes > tonumber(redis.call('HGET', h, 'max_votes')) then
    redis.call('HSET', h, 'max_votes', votes)
    return kept('escalated', id, quiet)
  end
  return kept('ongoing', id, quiet)
end
if open then
  local id = tonumber(redis.call('HGET', h, 'seq'))
  local quiet = tonumber(redis.call('HGET', h, 'quiet'))
  if redis.call('HINCRBY', h, 'calm', 1) >= tonumber(ARGV[4]) then
    redis.call('HSET', h, 'open', '0', 'closed_at', now)
    redis.call('SREM', open_set, subject)
    local f = redis.call('HGETALL', h)
    local record = {'id', subject .. '#' .. id, 'end', now}
    for i = 1, #f, 2 do record[#record + 1] = f[i]; record[#record + 1] = f[i + 1] end
    redis.call('XADD', log, 'MAXLEN', '~', ARGV[12], '*', unpack(record))
    redis.call('XADD', sensor_log, 'MAXLEN', '~', ARGV[13], '*', unpack(record))
    redis.call('PEXPIRE', sensor_log, ARGV[11])
    return kept('closed', id, quiet)
  end
  return kept('ongoing', id, quiet)
end
return {'none', 0, 0}
"""

NOTIFY = ("opened", "escalated", "closed")


class Incidents:
    """Tracks incidents in Redis, logs each one once it closes, and queues an alert for every
    transition worth a message (when alerts are delivered at all).

    Parameters
    ----------
    client
        Redis (``decode_responses=True``).
    keys
        The namespace's `Keys`.
    calm_readings
        Non-alarm readings in a row that close an incident.
    settings
        ``ALERT_URLS`` (alerts are queued only when set; incidents are tracked and logged
        anyway), ``ALERT_MIN_INTERVAL_S`` (the shortest time between two opening alerts of one
        subject: incidents opened sooner are tracked but not announced, ``quiet``, and neither
        are their escalation and recovery), and the lengths of the alert stream and the logs
        (the alert stream's and the incident log's shared by the key buckets, rounded up).
    state_ttl_ms
        How long the state of a subject with no verdict is kept (the readings' retention), so
        subjects that stop reporting, or that a client made up, do not stay for ever.
    """

    def __init__(self, client: redis.Redis, keys: Keys, calm_readings: int, settings: AlertSettings,
                 state_ttl_ms: int = 3 * 86_400_000):
        self.client = client
        self.keys = keys
        self.calm_readings = calm_readings
        self.settings = settings
        self.alerts = bool(settings.alert_urls)
        self.state_ttl_ms = state_ttl_ms
        self._script = client.register_script(_INCIDENT)

    def stream(self, subject: str) -> str:
        """The alert stream of `subject`'s key bucket."""
        return self.keys.alerts(self.keys.bucket(subject))

    @_unavailable  # a Redis failure (a failover's NOREPLICAS) is a 503 the client retries, never a 500
    def observe(self, subject: str, alarm: bool, votes: int, now_ms: int, alert: dict) -> str:
        """Apply one verdict of `subject`; queue `alert` when it opens, escalates or closes one.

        Returns the transition (``opened``, ``escalated``, ``closed``, ``ongoing``, ``none``).
        """
        script, keys, args = self.call(subject, alarm, votes, now_ms, alert)
        return self.settle(subject, alert, script(keys=keys, args=args))

    def call(self, subject: str, alarm: bool, votes: int, now_ms: int, alert: dict) -> ScriptCall:
        """The script call that applies one verdict of `subject`, to be run and its reply given
        to `settle` (`observe` does both; judging runs it in the round trip that stores the
        decision, `webapp.storage.Store.record_decision`)."""
        sensor = subject.split("/", 1)[0]
        value = float(alert.get("value") or 0.0)
        reference = alert.get("reference_level")
        deviation = abs(value - reference) if isinstance(reference, (int, float)) else 0.0
        voted = [name for name, ballot in (alert.get("votes") or {}).items()
                 if isinstance(ballot, dict) and ballot.get("vote")]
        bucket = self.keys.bucket(subject)
        keys = [self.keys.incident(subject), self.keys.incidents_open(bucket), self.keys.incident_log(bucket),
                self.keys.sensor_incidents(sensor)]
        args = [int(alarm), votes, now_ms, self.calm_readings, int(self.settings.alert_min_interval_s * 1000),
                subject, repr(value), repr(deviation), ",".join(voted), alert.get("kind", "decision"),
                self.state_ttl_ms, self.keys.share(self.settings.incident_log_max),
                self.settings.incident_sensor_log_max]
        return self._script, keys, args

    @_unavailable
    def settle(self, subject: str, alert: dict, reply: list) -> str:
        """Queue `alert` when the script's `reply` (`call`) opened, escalated or closed an incident
        of `subject`; returns the transition."""
        transition, incident, quiet = reply
        if transition in NOTIFY and self.alerts:
            if int(quiet):
                metrics.ALERTS.labels(transition, "suppressed").inc()
            else:
                body = {**alert, "subject": subject, "incident": f"{subject}#{incident}", "transition": transition}
                self.client.xadd(self.stream(subject), {"alert": json.dumps(body, sort_keys=True)},
                                 maxlen=self.keys.share(self.settings.alert_stream_max), approximate=True)
                metrics.ALERTS.labels(transition, "queued").inc()
        return transition

    def read(self, count: int, sensor: str | None = None) -> list[dict]:
        """Incidents newest first, at most `count`: the open ones, then the closed ones from the
        incident logs (of one `sensor` and its edge nodes, when given), every key bucket's merged
        newest first."""
        buckets = [self.keys.bucket(sensor)] if sensor is not None else self.keys.all_buckets
        pipe = self.client.pipeline(transaction=False)
        for bucket in buckets:
            pipe.smembers(self.keys.incidents_open(bucket))
        subjects = sorted({s for batch in executed(pipe) for s in batch})
        if sensor is not None:
            subjects = [s for s in subjects if s.split("/", 1)[0] == sensor]
        pipe = self.client.pipeline(transaction=False)
        for subject in subjects:
            pipe.hgetall(self.keys.incident(subject))
        states = executed(pipe)
        found = [_incident(state) for state in states if state.get("open") == "1"]
        found.sort(key=lambda i: i["start"], reverse=True)
        logs = [self.keys.sensor_incidents(sensor)] if sensor is not None else \
            [self.keys.incident_log(bucket) for bucket in buckets]
        pipe = self.client.pipeline(transaction=False)
        for log_key in logs:
            pipe.xrevrange(log_key, count=count)
        closed = [entry for batch in executed(pipe) for entry in batch]
        closed.sort(key=lambda entry: _entry_order(entry[0]), reverse=True)
        return (found + [_incident(fields) for _, fields in closed])[:count]


def _entry_order(entry_id: str) -> tuple[int, int]:
    """A stream entry id (``ms-seq``) as a sortable pair."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _incident(state: dict) -> dict:
    """One incident as the API shows it, from its Redis hash or its log entry."""
    subject = state.get("subject", "")
    seq = state.get("seq", "0")
    return {
        "id": state.get("id") or f"{subject}#{seq}", "subject": subject, "sensor": subject.split("/", 1)[0],
        "kind": state.get("kind", "decision"), "state": "open" if state.get("open") == "1" else "closed",
        "start": int(state["opened_at"]), "end": int(state["end"]) if "end" in state else None,
        "last_alarm": int(state.get("last_alarm_at", state["opened_at"])),
        "alarms": int(state.get("alarms", 0)),
        "peak": {"value": float(state.get("peak_value", "nan")), "votes": int(state.get("peak_votes", 0)),
                 "timestamp": int(state.get("peak_at", state["opened_at"]))},
        "detectors": [d for d in state.get("detectors", "").split(",") if d],
    }


def slack_text(alert: dict) -> str:
    """A one-line summary, for Slack-compatible incoming webhooks (their ``text`` field)."""
    what = {"opened": "OPEN", "escalated": "ESCALATED", "closed": "RESOLVED"}[alert["transition"]]
    if alert.get("kind") == "sensor_fault":
        return f"[{what}] sensor fault {alert['subject']}: {alert.get('value')} ({alert.get('reason', '')})"
    votes = alert.get("quorum", {})
    return (f"[{what}] {alert['sensor']} {alert.get('verdict', '')}: value {alert.get('value')} "
            f"({votes.get('votes', '?')} of {votes.get('of', '?')} detectors)")


class Notifier:
    """Delivers queued alerts to every webhook URL, in a daemon thread of its own.

    Parameters
    ----------
    client
        Redis (``decode_responses=True``).
    keys
        The namespace's `Keys`: every key bucket's alert stream (`Incidents.stream`), each alert's
        delivered URLs. Each stream has its consumer group; one pass reads them all in one
        pipeline and, when none had anything, waits up to ``IDLE_WAIT_S`` (a blocking read
        can wait on one stream only, or on several of one hash slot).
    settings
        ``ALERT_URLS``: each alert is POSTed as JSON to every one (with a ``text`` summary);
        the per-POST timeout, attempts per URL per pass and first backoff (doubled each retry);
        how long an alert may stay pending (a dead worker's, or a failed pass) before another
        worker takes it over; how long its delivered URLs are remembered.
    consumer
        This worker's name in the consumer group (hostname and pid).
    """

    group = "notifier"
    IDLE_WAIT_S = 0.25

    def __init__(self, client: redis.Redis, keys: Keys, settings: AlertSettings, consumer: str):
        self.client = client
        self.keys = keys
        self.streams = {keys.alerts(bucket): bucket for bucket in keys.all_buckets}
        self.urls = settings.alert_urls
        self.consumer = consumer
        self.timeout_s = settings.alert_timeout_s
        self.retries = settings.alert_retries
        self.backoff_s = settings.alert_backoff_s
        self.reclaim_s = settings.alert_reclaim_s
        self.delivered_ttl_s = settings.alert_delivered_ttl_s
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._session = requests.Session()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="alert-notifier", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._session.close()

    def _run(self) -> None:
        grouped = False  # created again after any error: a restarted or failed-over node may lack them
        while not self._stopping.is_set():
            try:
                if not grouped:
                    self._ensure_groups()
                    grouped = True
                self.pass_once(block_ms=1000)
            except redis.RedisError as exc:
                grouped = False
                log.warning("alert notifier: Redis unavailable (%s); retrying", exc.__class__.__name__)
                self._stopping.wait(1.0)

    def _ensure_groups(self) -> None:
        """Create each bucket's stream and consumer group unless they exist (``BUSYGROUP``)."""
        pipe = self.client.pipeline(transaction=False)
        for stream in self.streams:
            pipe.xgroup_create(stream, self.group, id="0", mkstream=True)
        replies = pipe.execute(raise_on_error=False)
        raise_first_error([reply for reply in replies
                           if not (isinstance(reply, redis.ResponseError) and "BUSYGROUP" in str(reply))])

    def pass_once(self, block_ms: int = 0) -> int:
        """Deliver what is pending too long and what is new in every bucket's stream; returns
        alerts fully delivered. With `block_ms` and nothing to deliver, waits up to that long
        (at most ``IDLE_WAIT_S``) before returning."""
        pipe = self.client.pipeline(transaction=False)
        for stream in self.streams:
            pipe.xautoclaim(stream, self.group, self.consumer, min_idle_time=int(self.reclaim_s * 1000),
                            start_id="0-0", count=50)
            pipe.xreadgroup(self.group, self.consumer, {stream: ">"}, count=50)
        replies = executed(pipe)
        entries = []
        for stream, (claimed, fresh) in zip(self.streams, zip(replies[::2], replies[1::2])):
            batch = list(claimed[1]) + [entry for _, got in fresh or [] for entry in got]
            entries += [(stream, entry_id, fields) for entry_id, fields in batch if fields]
        if not entries and block_ms:
            self._stopping.wait(min(block_ms / 1000, self.IDLE_WAIT_S))
        return sum(self._deliver(stream, entry_id, fields) for stream, entry_id, fields in entries)

    def _deliver(self, stream: str, entry_id: str, fields: dict) -> bool:
        alert = json.loads(fields["alert"])
        done_key = self.keys.alert_delivered(self.streams[stream], entry_id)
        delivered = self.client.smembers(done_key)
        body = {**alert, "text": slack_text(alert)}
        for url in self.urls:
            if url in delivered:
                continue
            if not self._post(url, body):
                metrics.ALERTS.labels(alert["transition"], "failed").inc()
                return False  # stays pending: reclaimed and retried later
            self.client.sadd(done_key, url)
            self.client.expire(done_key, self.delivered_ttl_s)
        self.client.xack(stream, self.group, entry_id)
        self.client.delete(done_key)
        metrics.ALERTS.labels(alert["transition"], "delivered").inc()
        return True

    def _post(self, url: str, body: dict) -> bool:
        delay = self.backoff_s
        for attempt in range(1, self.retries + 1):
            try:
                answer = self._session.post(url, json=body, timeout=self.timeout_s)
                if answer.status_code < 300:
                    return True
                log.warning("alert to %s answered %s (attempt %d)", url, answer.status_code, attempt)
            except requests.RequestException as exc:
                log.warning("alert to %s failed: %s (attempt %d)", url, exc.__class__.__name__, attempt)
            if attempt < self.retries and self._stopping.wait(delay):
                return False
            delay *= 2
        return False


def consumer_name(hostname: str) -> str:
    """A consumer name unique to this worker process."""
    return f"{hostname}-{os.getpid()}"
