"""Incidents and webhook alerts: one alert per incident, re-sent on escalation and recovery.

A verdict describes one reading; an incident describes a fault. An incident of a sensor opens
at its first critical verdict, escalates when more detectors vote than before, and closes
after ``WINDOW_SIZE`` non-critical readings in a row. An excluded edge node (a sensor fault)
is an incident of its own subject ``<group>/<node>``, closed after the same number of rounds
without an exclusion. Incident state lives in Redis and is changed by one Lua script, so five
replicas judging one sensor agree on what is new.

Alerts are appended to a Redis stream and delivered by a `Notifier` thread in every worker,
reading through a consumer group: an alert survives the death of the worker that raised it
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
from collections.abc import Sequence

import redis
import requests

from webapp import metrics

log = logging.getLogger(__name__)

# KEYS: incident hash. ARGV: alarm (0/1), votes, now ms, calm readings to close, min interval ms.
# Returns {transition, incident id, quiet}: transition is opened|escalated|closed|ongoing|none.
_INCIDENT = """
local h = KEYS[1]
local alarm, votes, now = ARGV[1] == '1', tonumber(ARGV[2]), tonumber(ARGV[3])
local open = redis.call('HGET', h, 'open') == '1'
if alarm then
  if not open then
    local id = redis.call('HINCRBY', h, 'seq', 1)
    local last = tonumber(redis.call('HGET', h, 'last_alert') or '-1e18')
    local quiet = (now - last) < tonumber(ARGV[5]) and 1 or 0
    if quiet == 0 then redis.call('HSET', h, 'last_alert', now) end
    redis.call('HSET', h, 'open', '1', 'opened_at', now, 'max_votes', votes, 'calm', 0, 'quiet', quiet)
    return {'opened', id, quiet}
  end
  local id = tonumber(redis.call('HGET', h, 'seq'))
  local quiet = tonumber(redis.call('HGET', h, 'quiet'))
  redis.call('HSET', h, 'calm', 0)
  if votes > tonumber(redis.call('HGET', h, 'max_votes')) then
    redis.call('HSET', h, 'max_votes', votes)
    return {'escalated', id, quiet}
  end
  return {'ongoing', id, quiet}
end
if open then
  local id = tonumber(redis.call('HGET', h, 'seq'))
  local quiet = tonumber(redis.call('HGET', h, 'quiet'))
  if redis.call('HINCRBY', h, 'calm', 1) >= tonumber(ARGV[4]) then
    redis.call('HSET', h, 'open', '0', 'closed_at', now)
    return {'closed', id, quiet}
  end
  return {'ongoing', id, quiet}
end
return {'none', 0, 0}
"""

NOTIFY = ("opened", "escalated", "closed")


class Incidents:
    """Tracks incidents in Redis and queues an alert for every transition worth a message.

    Parameters
    ----------
    client
        Redis (``decode_responses=True``).
    prefix
        Key namespace (``AEROGUARD_KEY_PREFIX``).
    calm_readings
        Non-alarm readings in a row that close an incident.
    min_interval_s
        Shortest time between two opening alerts of one subject; incidents opened sooner are
        tracked but not announced (``quiet``), and neither are their escalation and recovery.
    """

    def __init__(self, client: redis.Redis, prefix: str, calm_readings: int, min_interval_s: float):
        self.client = client
        self.prefix = prefix
        self.calm_readings = calm_readings
        self.min_interval_s = min_interval_s
        self._script = client.register_script(_INCIDENT)

    @property
    def stream(self) -> str:
        return f"{self.prefix}alerts"

    def observe(self, subject: str, alarm: bool, votes: int, now_ms: int, alert: dict) -> str:
        """Apply one verdict of `subject`; queue `alert` when it opens, escalates or closes one.

        Returns the transition (``opened``, ``escalated``, ``closed``, ``ongoing``, ``none``).
        """
        key = f"{self.prefix}incident:{subject}"
        transition, incident, quiet = self._script(
            keys=[key], args=[int(alarm), votes, now_ms, self.calm_readings, int(self.min_interval_s * 1000)])
        if transition in NOTIFY:
            if int(quiet):
                metrics.ALERTS.labels(transition, "suppressed").inc()
            else:
                body = {**alert, "subject": subject, "incident": f"{subject}#{incident}", "transition": transition}
                self.client.xadd(self.stream, {"alert": json.dumps(body, sort_keys=True)}, maxlen=10_000, approximate=True)
                metrics.ALERTS.labels(transition, "queued").inc()
        return transition


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
    stream
        The alert stream (`Incidents.stream`).
    urls
        Webhook URLs; each alert is POSTed as JSON to every one (with a ``text`` summary).
    consumer
        This worker's name in the consumer group (hostname and pid).
    timeout_s, retries, backoff_s
        Per-POST timeout, attempts per URL per pass, first backoff (doubled each retry).
    reclaim_s
        Alerts pending longer than this (a dead worker's, or a failed pass) are taken over.
    """

    group = "notifier"

    def __init__(self, client: redis.Redis, stream: str, urls: Sequence[str], consumer: str,
                 timeout_s: float = 3.0, retries: int = 3, backoff_s: float = 0.5, reclaim_s: float = 15.0):
        self.client = client
        self.stream = stream
        self.urls = tuple(urls)
        self.consumer = consumer
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.reclaim_s = reclaim_s
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
        while not self._stopping.is_set():
            try:
                self._ensure_group()
                self.pass_once(block_ms=1000)
            except redis.RedisError as exc:
                log.warning("alert notifier: Redis unavailable (%s); retrying", exc.__class__.__name__)
                self._stopping.wait(1.0)

    def _ensure_group(self) -> None:
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def pass_once(self, block_ms: int = 0) -> int:
        """Deliver what is pending too long and what is new; returns alerts fully delivered."""
        _, claimed, _ = self.client.xautoclaim(self.stream, self.group, self.consumer,
                                               min_idle_time=int(self.reclaim_s * 1000), start_id="0-0", count=50)
        fresh = self.client.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=50,
                                       block=block_ms or None)
        entries = list(claimed) + [entry for _, batch in fresh for entry in batch]
        return sum(self._deliver(entry_id, fields) for entry_id, fields in entries if fields)

    def _deliver(self, entry_id: str, fields: dict) -> bool:
        alert = json.loads(fields["alert"])
        done_key = f"{self.stream}:delivered:{entry_id}"
        delivered = self.client.smembers(done_key)
        body = {**alert, "text": slack_text(alert)}
        for url in self.urls:
            if url in delivered:
                continue
            if not self._post(url, body):
                metrics.ALERTS.labels(alert["transition"], "failed").inc()
                return False  # stays pending: reclaimed and retried later
            self.client.sadd(done_key, url)
            self.client.expire(done_key, 86_400)
        self.client.xack(self.stream, self.group, entry_id)
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
