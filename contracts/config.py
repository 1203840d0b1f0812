"""The hot-configuration contract: the JSON documents in ZooKeeper that configure edge groups.

Two documents configure every node of a group: ``<root>/config`` (all groups) and
``<root>/groups/<group>/config`` (overrides). A node merges, key by key, its own defaults,
then the cluster document, then its group's. Each document is checked alone
(`check_document`: known keys, types, ranges, URLs) and the merged result again
(`merge`: the cross-field rules). The edge applies a merge only if it passes; the web tier
refuses a write whose merge with the documents already in ZooKeeper would not pass, so a
``200`` from ``PUT /api/v1/config`` means every node will apply it.

Examples
--------
>>> check_document({"sampling_period_s": 2, "api_urls": ["http://web:8000"]})
{'sampling_period_s': 2.0, 'api_urls': ['http://web:8000']}
>>> merge({"sampling_period_s": 0.5})["round_timeout_s"] is None
True
>>> merge({"round_timeout_s": 5})
Traceback (most recent call last):
contracts.ContractError: round_timeout_s must not exceed sampling_period_s (5 > 1)
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from collections.abc import Mapping
from urllib.parse import urlsplit

from contracts import ContractError

MAX_URLS = 16
MAX_URL_CHARS = 512
# Derived timeouts when a document sets none: always valid for any period.
ROUND_TIMEOUT_SHARE = 0.8
HTTP_TIMEOUT_SHARE = 0.4

# What a node uses where no layer sets a key (its own defaults, EDGE_PERIOD_S and
# AEROGUARD_API_URLS, sit between these and ZooKeeper's documents).
DEFAULTS: dict[str, object] = {"sampling_period_s": 1.0, "round_timeout_s": None, "api_urls": [],
                               "fusion_k": 3.5, "fusion_min_spread": 0.5, "http_timeout_s": None}

# key: (low, low included, high): numbers within [low, high] or (low, high].
RANGES: dict[str, tuple[float, bool, float]] = {
    "sampling_period_s": (0.1, True, 3600.0),
    "round_timeout_s": (0.0, False, 3600.0),
    "fusion_k": (0.0, False, 100.0),
    "fusion_min_spread": (0.0, True, 1e9),
    "http_timeout_s": (0.0, False, 60.0),
}
KEYS = (*RANGES, "api_urls")


def check_number(value: object, key: str) -> float:
    """`value` as a float if it is a number (not a bool) in the range of `key`."""
    low, low_included, high = RANGES[key]
    interval = f"{'[' if low_included else '('}{low:g}, {high:g}]"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ContractError(f"{key} must be a number in {interval}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not (math.isfinite(number) and (low <= number if low_included else low < number) and number <= high):
        raise ContractError(f"{key} must be a number in {interval}")
    return number


def check_urls(value: object, hosts: Iterable[str] | None = None) -> list[str]:
    """`value` if it is a list of web tier base URLs: http(s), a host, no user info.

    `hosts`, when given, is the allow-list of host names (the web tier's ``CONFIG_URL_HOSTS``).

    >>> check_urls(["https://user:pw@web:8000"])
    Traceback (most recent call last):
    contracts.ContractError: api_urls: 'https://user:pw@web:8000' must not carry user info
    """
    if not isinstance(value, list) or len(value) > MAX_URLS:
        raise ContractError(f"api_urls must be a list of at most {MAX_URLS} URLs")
    allowed = None if hosts is None else {h.lower() for h in hosts}
    for url in value:
        _check_url(url, allowed)
    return list(value)


def _check_url(url: object, allowed: set[str] | None) -> None:
    if not isinstance(url, str) or not url.isprintable() or " " in url or len(url) > MAX_URL_CHARS:
        raise ContractError(f"api_urls: {url!r} is not an http(s) URL")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        raise ContractError(f"api_urls: {url!r} is not an http(s) URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ContractError(f"api_urls: {url!r} is not an http(s) URL with a host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ContractError(f"api_urls: {url!r} must not carry user info")
    if allowed is not None and parts.hostname.lower() not in allowed:
        raise ContractError(f"api_urls: host {parts.hostname!r} is not in CONFIG_URL_HOSTS")


def check_document(doc: object, hosts: Iterable[str] | None = None) -> dict[str, object]:
    """The checked values of one config document (numbers as floats); `ContractError` if bad."""
    if not isinstance(doc, Mapping):
        raise ContractError("config must be a JSON object")
    unknown = sorted(set(doc) - set(KEYS))
    if unknown:
        raise ContractError(f"unknown config key(s): {', '.join(map(str, unknown))}")
    return {key: check_urls(value, hosts) if key == "api_urls" else check_number(value, key)
            for key, value in doc.items()}


def merge(*layers: Mapping[str, object]) -> dict[str, object]:
    """`DEFAULTS` overridden by each checked layer in turn; `ContractError` if the result is bad."""
    values = dict(DEFAULTS)
    for layer in layers:
        values.update(layer)
    check_merged(values)
    return values


def check_merged(values: Mapping[str, object]) -> None:
    """The cross-field rules of a complete config."""
    period = values["sampling_period_s"]
    round_timeout, http_timeout = values.get("round_timeout_s"), values.get("http_timeout_s")
    if round_timeout is not None and round_timeout > period:
        raise ContractError(f"round_timeout_s must not exceed sampling_period_s ({round_timeout:g} > {period:g})")
    if http_timeout is not None and http_timeout >= period:
        raise ContractError(f"http_timeout_s must be below sampling_period_s ({http_timeout:g} >= {period:g})")


def round_timeout(values: Mapping[str, object]) -> float:
    """How long a round waits for readings: ``round_timeout_s`` or 0.8 × the period."""
    set_ = values.get("round_timeout_s")
    return set_ if set_ is not None else ROUND_TIMEOUT_SHARE * values["sampling_period_s"]


def http_timeout(values: Mapping[str, object]) -> float:
    """The timeout of one POST: ``http_timeout_s`` or 0.4 × the period."""
    set_ = values.get("http_timeout_s")
    return set_ if set_ is not None else HTTP_TIMEOUT_SHARE * values["sampling_period_s"]
