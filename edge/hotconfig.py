"""Hot configuration: DataWatches on the cluster and group config, validated, last good kept.

Two JSON documents in ZooKeeper configure every node of a group at run time:
``<root>/config`` (all groups) and ``<root>/groups/<group>/config`` (overrides). Each key
is validated; a document with bad JSON, an unknown key or a bad value is ignored as a
whole (the last good version of that document stays in force) and the error is logged.
The merged result is validated again (cross-field rules) and, if bad, the last good merged
config stays in force. DataWatch coalesces quick changes and later calls run on kazoo's
worker thread, so handling is state-based: each call recomputes from the latest data.

The rules are the config contract (``contracts/config.py``), which the web tier loads too:
``PUT /api/v1/config`` refuses a document whose merge this module would reject.
"""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field

from contracts import ContractError
from contracts import config as contract
from contracts.zk_layout import ZkLayout

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """Raised when a config document or a merged config breaks a rule; names the key."""


@dataclass(frozen=True)
class EdgeConfig:
    """The live configuration of a group's rounds, fusion and delivery.

    ``round_timeout_s`` defaults to 0.8 × period and ``http_timeout_s`` to 0.4 × period,
    so changing only the period keeps a valid config.
    """

    sampling_period_s: float = 1.0
    round_timeout_s: float | None = None
    api_urls: tuple[str, ...] = ()
    fusion_k: float = 3.5
    fusion_min_spread: float = 0.5
    http_timeout_s: float | None = None

    def __post_init__(self) -> None:
        try:
            contract.check_merged(self.__dict__)
        except ContractError as exc:
            raise ConfigError(str(exc)) from None

    @property
    def round_timeout(self) -> float:
        return contract.round_timeout(self.__dict__)

    @property
    def http_timeout(self) -> float:
        return contract.http_timeout(self.__dict__)


def parse_document(data: bytes | str | None) -> dict[str, object]:
    """Validate one config document (JSON object); return its checked values.

    Raises
    ------
    ConfigError
        Bad JSON, not an object, an unknown key or a bad value.

    Examples
    --------
    >>> parse_document(b'{"sampling_period_s": 2}')
    {'sampling_period_s': 2.0}
    >>> parse_document(b'{"sampling_period_s": 0.001}')
    Traceback (most recent call last):
    ...
    edge.hotconfig.ConfigError: sampling_period_s must be a number in [0.1, 3600]
    """
    if data is None or data in (b"", ""):
        return {}
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"config is not valid JSON: {exc}") from exc
    try:
        return contract.check_document(doc)
    except ContractError as exc:
        raise ConfigError(str(exc)) from None


def merge(*layers: Mapping[str, object]) -> EdgeConfig:
    """Later layers override earlier ones key by key; raise `ConfigError` if the result is bad.

    >>> merge({"sampling_period_s": 1.0}, {"sampling_period_s": 0.5}).round_timeout
    0.4
    """
    try:
        values = contract.merge(*layers)
    except ContractError as exc:
        raise ConfigError(str(exc)) from None
    return EdgeConfig(**{**values, "api_urls": tuple(values["api_urls"])})


@dataclass
class _State:
    defaults: dict[str, object]
    cluster: dict[str, object] = field(default_factory=dict)
    group: dict[str, object] = field(default_factory=dict)


class HotConfig:
    """Keeps the current `EdgeConfig` of one group in step with ZooKeeper.

    Parameters
    ----------
    zk
        A started `KazooClient`.
    root, group
        AeroGuard's root znode and the group name.
    defaults
        Values used where ZooKeeper sets nothing (validated like a document).
    on_change
        Called with the new `EdgeConfig` whenever it changes; it must only signal (it runs
        on kazoo's worker thread).
    on_reject
        Called with the error when a document or merge is rejected (same rule).
    """

    def __init__(self, zk, root: str, group: str, defaults: Mapping[str, object] | None = None,
                 on_change: Callable[[EdgeConfig], None] | None = None,
                 on_reject: Callable[[ConfigError], None] | None = None) -> None:
        self.zk = zk
        layout = ZkLayout(root)
        self.cluster_path = layout.config
        self.group_path = layout.group(group).config
        checked = parse_document(json.dumps(dict(defaults or {})))
        self._state = _State(defaults=checked)
        self._current = merge(checked)
        self._on_change = on_change
        self._on_reject = on_reject
        self._lock = threading.Lock()
        self.errors = 0
        self.applied = 0

    @property
    def current(self) -> EdgeConfig:
        with self._lock:
            return self._current

    def start(self) -> None:
        """Install the DataWatches (the first calls run here, in the calling thread)."""
        self.zk.DataWatch(self.cluster_path, lambda data, stat: self._update("cluster", data))
        self.zk.DataWatch(self.group_path, lambda data, stat: self._update("group", data))

    def _update(self, layer: str, data: bytes | None) -> None:
        try:
            doc = parse_document(data)
        except ConfigError as exc:
            self._reject(layer, exc)
            return
        with self._lock:
            candidate = {**self._state.__dict__, layer: doc}
            try:
                new = merge(candidate["defaults"], candidate["cluster"], candidate["group"])
            except ConfigError as exc:
                new, rejected = self._current, exc
            else:
                rejected = None
                setattr(self._state, layer, doc)
            changed, self._current = new != self._current, new
            self.applied += int(changed)
        if rejected is not None:
            self._reject(layer, rejected)
            return
        if changed:
            log.info("config applied: %s", new)
            if self._on_change:
                self._on_change(new)

    def _reject(self, layer: str, exc: ConfigError) -> None:
        with self._lock:
            self.errors += 1
        log.error("config %s rejected, keeping the last good one: %s", layer, exc)
        if self._on_reject:
            self._on_reject(exc)
