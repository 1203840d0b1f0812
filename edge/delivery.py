"""Delivery of aggregates to the web tier: bounded POSTs, failover, and a durable spool.

The leader hands each aggregate to `Delivery.submit`; a worker thread POSTs it to
``<api_url>/api/v1/readings`` with a timeout below the sampling period, trying every
configured URL (starting with the last one that answered) before backing off. When no web
replica takes it, the aggregate goes to a `Spool`: one fsynced file per aggregate, bounded,
replayed oldest first before anything newer is sent, so the web tier sees rounds in order.
The idempotency key ``group:epoch:round`` makes every retry safe: a round is stored once.

Answers: 201 stored, 200 duplicate (both done); 409 stale epoch (dropped, and the node is
told so it steps down); 400/413/422 refused (a retry cannot fix it); anything else —
401/403, 5xx, timeouts, refused connections — is retried and kept in the spool.

No round is dropped silently: an aggregate that breaks the contract (``contracts/``) is
refused by the edge itself before it is queued, and one the web tier refuses is taken out of
the way; both are kept in the dead-letter folder ``<spool>/refused/`` (bounded) with the
error, counted (``refused`` in the node's delivery counters, published with its status) and
logged.
"""
from __future__ import annotations

import collections
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from dataclasses import dataclass

import requests

from edge.events import Counters
from edge.events import EventLog
from edge.hotconfig import EdgeConfig
from edge.schema import SchemaError
from edge.schema import idempotency_key
from edge.schema import validate_aggregate

log = logging.getLogger(__name__)

READINGS_PATH = "/api/v1/readings"
MAX_BACKOFF_S = 2.0
REFUSED_DIR = "refused"
REFUSED_MAX = 10_000


class Spool:
    """A bounded FIFO of aggregates on disk, one fsynced JSON file each, oldest first.

    Parameters
    ----------
    directory
        Created if missing; files ``<12-digit sequence>.json``.
    max_items
        When full, the oldest aggregate is dropped (counted in `dropped`, logged).

    Examples
    --------
    >>> import tempfile
    >>> spool = Spool(tempfile.mkdtemp(), max_items=2)
    >>> for r in range(3):
    ...     _ = spool.append({"round": r})
    >>> [doc["round"] for _, doc in spool.oldest(5)], spool.dropped
    ([1, 2], 1)
    """

    def __init__(self, directory: str, max_items: int) -> None:
        self.directory = directory
        self.max_items = max_items
        self.dropped = 0
        self._lock = threading.Lock()
        os.makedirs(directory, exist_ok=True)
        names = sorted(n for n in os.listdir(directory) if n.endswith(".json") and n[:-5].isdigit())
        self._names = collections.deque(names)
        self._next = int(names[-1][:-5]) + 1 if names else 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._names)

    def append(self, doc: dict) -> str:
        """Write `doc` durably (tmp file, fsync, rename, fsync of the folder); return its name."""
        with self._lock:
            name = f"{self._next:012d}.json"
            self._next += 1
            tmp = os.path.join(self.directory, f".{name}.tmp")
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump(doc, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, os.path.join(self.directory, name))
            self._fsync_dir()
            self._names.append(name)
            while len(self._names) > self.max_items:
                self._drop_oldest()
            return name

    def oldest(self, count: int) -> list[tuple[str, dict]]:
        """Up to `count` of the oldest aggregates as ``(name, doc)``; unreadable files are dropped."""
        with self._lock:
            names = list(self._names)[:count]
        items = []
        for name in names:
            try:
                with open(os.path.join(self.directory, name), encoding="utf-8") as handle:
                    items.append((name, json.load(handle)))
            except (OSError, ValueError) as exc:
                log.error("spool file %s unreadable, dropped: %s", name, exc)
                self.remove(name)
        return items

    def remove(self, name: str) -> None:
        with self._lock:
            try:
                os.unlink(os.path.join(self.directory, name))
            except FileNotFoundError:
                pass
            try:
                self._names.remove(name)
            except ValueError:
                pass

    def _drop_oldest(self) -> None:
        name = self._names.popleft()
        self.dropped += 1
        log.error("spool full (%d): dropping the oldest aggregate %s", self.max_items, name)
        try:
            os.unlink(os.path.join(self.directory, name))
        except FileNotFoundError:
            pass

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass(frozen=True)
class Outcome:
    """What became of one POST: ``stored``, ``duplicate``, ``stale``, ``refused`` or ``failed``."""

    status: str
    code: int | None = None
    url: str | None = None
    newest_epoch: int | None = None
    error: str | None = None

    @property
    def done(self) -> bool:
        """No need to send this aggregate again."""
        return self.status in ("stored", "duplicate", "stale", "refused")


class Delivery:
    """Sends aggregates in order, with failover across URLs, backoff, and the spool.

    Parameters
    ----------
    spool
        Where undelivered aggregates wait, durably.
    config
        Returns the live `EdgeConfig` (URLs and timeouts change without restart).
    can_send
        False while this node must not send (ZooKeeper connection suspended).
    on_stale
        Called with ``(epoch, newest_epoch)`` when the web tier answers 409.
    api_key
        Sent as ``X-API-Key`` when not None.
    events
        Event log for drills and fault tests.
    refused
        The dead-letter folder of refused aggregates; default ``<spool>/refused/``, bounded
        to `REFUSED_MAX` (the oldest goes first, counted in its `dropped`).
    """

    def __init__(self, spool: Spool, config: Callable[[], EdgeConfig], can_send: Callable[[], bool],
                 on_stale: Callable[[int, int | None], None], api_key: str | None = None,
                 events: EventLog | None = None, refused: Spool | None = None) -> None:
        self.spool = spool
        self.refused = refused if refused is not None else Spool(os.path.join(spool.directory, REFUSED_DIR),
                                                                  REFUSED_MAX)
        self.config = config
        self.can_send = can_send
        self.on_stale = on_stale
        self.api_key = api_key
        self.events = events or EventLog(None)
        self.counts = Counters()
        self._pending: collections.deque[dict] = collections.deque()
        self._wake = threading.Event()
        self._shutdown = threading.Event()
        self._preferred = 0
        self._backoff = 0.0
        self._session = requests.Session()
        self._thread = threading.Thread(target=self._run, name="delivery", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker; aggregates not yet sent go to the spool (replayed at next start)."""
        self._shutdown.set()
        self._wake.set()
        self._thread.join(timeout)
        self._spool_pending()
        self._session.close()

    def submit(self, doc: dict) -> None:
        """Queue one aggregate for delivery (called by the leader; never blocks on the network).

        One that breaks the contract is not queued: the web tier would refuse it, so it is
        kept in the dead-letter folder at once.
        """
        try:
            validate_aggregate(doc)
        except SchemaError as exc:
            self._refuse(doc, Outcome("refused", error=str(exc)), "edge")
            return
        self._pending.append(doc)
        self._wake.set()

    def backlog(self) -> int:
        return len(self._pending) + len(self.spool)

    def _run(self) -> None:
        while not self._shutdown.is_set():
            self._wake.wait(self._backoff or 0.2)
            self._wake.clear()
            if self._shutdown.is_set():
                break
            if not self.can_send():
                self._spool_pending()
                continue
            sent_all = self._replay() and self._send_pending()
            self._backoff = 0.0 if sent_all else min(max(2 * self._backoff, 0.1), MAX_BACKOFF_S)

    def _replay(self) -> bool:
        """Send the spool oldest first; False at the first aggregate that could not be sent."""
        while len(self.spool) and not self._shutdown.is_set() and self.can_send():
            for name, doc in self.spool.oldest(16):
                if not self._deliver(doc).done:
                    return False
                self.spool.remove(name)
        return not len(self.spool)

    def _send_pending(self) -> bool:
        while self._pending and not self._shutdown.is_set():
            if not self.can_send():
                return False
            doc = self._pending[0]
            if not self._deliver(doc).done:
                self._spool_pending()
                return False
            self._pending.popleft()
        return True

    def _spool_pending(self) -> None:
        while self._pending:
            self.spool.append(self._pending.popleft())

    def _deliver(self, doc: dict) -> Outcome:
        sent_at = time.time()
        outcome = self._post_anywhere(doc)
        self.counts.add(outcome.status)
        self.events.write("delivery", group=doc["group"], epoch=doc["epoch"], round=doc["round"],
                          status=outcome.status, code=outcome.code, url=outcome.url, sent_at=sent_at)
        if outcome.status == "stale":
            log.warning("web tier rejected %s: stale epoch (newest %s)", idempotency_key(doc), outcome.newest_epoch)
            self.on_stale(doc["epoch"], outcome.newest_epoch)
        elif outcome.status == "refused":
            self._refuse(doc, outcome, "web")
        return outcome

    def _refuse(self, doc: dict, outcome: Outcome, by: str) -> None:
        """Keep `doc` in the dead-letter folder with why it was refused; count and log it."""
        if by == "edge":
            self.counts.add("refused")  # a web refusal is counted by `_deliver`, as every answer
        self.events.write("refused", group=doc.get("group"), epoch=doc.get("epoch"), round=doc.get("round"),
                          by=by, code=outcome.code, error=outcome.error)
        try:
            name = self.refused.append({"refused_by": by, "refused_at": time.time(), **asdict(outcome),
                                        "aggregate": doc})
        except (OSError, TypeError, ValueError) as exc:
            self.counts.add("refused_lost")
            log.error("aggregate %s refused by the %s (%s: %s) and could not be kept: %s", _key(doc), by,
                      outcome.code, outcome.error, exc)
            return
        log.error("aggregate %s refused by the %s (%s: %s): kept in %s", _key(doc), by, outcome.code,
                  outcome.error, os.path.join(self.refused.directory, name))

    def _post_anywhere(self, doc: dict) -> Outcome:
        """Try every URL once, starting with the last one that answered."""
        config = self.config()
        urls = list(config.api_urls)
        if not urls:
            return Outcome("failed")
        start = self._preferred % len(urls)
        outcome = Outcome("failed")
        for i in range(len(urls)):
            index = (start + i) % len(urls)
            outcome = self._post(urls[index], doc, config.http_timeout)
            if outcome.done:
                self._preferred = index
                return outcome
        return outcome

    def _post(self, base_url: str, doc: dict, timeout: float) -> Outcome:
        url = base_url.rstrip("/")
        url = url if url.endswith(READINGS_PATH) else url + READINGS_PATH
        headers = {"Idempotency-Key": idempotency_key(doc)}
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        try:
            response = self._session.post(url, json=doc, headers=headers, timeout=timeout)
        except requests.RequestException as exc:
            log.warning("POST %s failed: %s", url, exc.__class__.__name__)
            return Outcome("failed", None, url)
        code = response.status_code
        if code in (200, 201):
            return Outcome("duplicate" if code == 200 else "stored", code, url)
        if code == 409:
            return Outcome("stale", code, url, _newest_epoch(response))
        if code in (400, 413, 422):
            return Outcome("refused", code, url, error=_error(response))
        log.warning("POST %s answered %d", url, code)
        return Outcome("failed", code, url)


def _key(doc: object) -> str:
    try:
        return idempotency_key(doc)
    except (TypeError, KeyError):
        return "(no key)"


def _error(response: requests.Response) -> str:
    """The web tier's ``error`` message, or the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    error = body.get("error") if isinstance(body, dict) else None
    return str(error)[:500] if error is not None else response.text[:200]


def _newest_epoch(response: requests.Response) -> int | None:
    try:
        body = response.json()
    except ValueError:
        return None
    newest = body.get("newest_epoch") if isinstance(body, dict) else None
    return newest if isinstance(newest, int) else None

