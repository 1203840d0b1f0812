"""The aggregate contract: one fused reading per round, from an edge group's leader.

Every limit is here and nowhere else: ids, integer ranges, the magnitude of values, the list
sizes, the length of a reason and how far in the future a timestamp may lie. Timestamps are
milliseconds since the Unix epoch.

Examples
--------
>>> doc = {"group": "boiler-1", "epoch": 17, "round": 42, "timestamp": 1763770000123, "value": 71,
...        "readings": [{"node_id": "n1", "value": 71.2, "measured_at": 1763770000100}]}
>>> check_aggregate(doc)["value"], check_aggregate(doc)["excluded"]
(71.0, [])
>>> check_aggregate({**doc, "value": 2e9})
Traceback (most recent call last):
contracts.ContractError: value must be within ±1e+09
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping

from contracts import ContractError

ID_PATTERN = r"[A-Za-z0-9_.-]{1,64}"
# No physical sensor reads beyond this; larger finite numbers (1e308) would overflow the
# float32 arithmetic of the models.
MAX_ABS_VALUE = 1e9
MAX_INT = 2**62
MAX_NODES = 64
MAX_REASON_CHARS = 200
# How far ahead of the receiver's clock a timestamp may lie: the web tier's default
# MAX_FUTURE_SKEW_S (tests/test_contracts.py holds the two equal); the edge checks its own
# aggregates against its own clock with it.
MAX_FUTURE_SKEW_MS = 5_000

REQUIRED = ("group", "epoch", "round", "timestamp", "value")
OPTIONAL = ("readings", "excluded")
READING_FIELDS = ("node_id", "value", "measured_at")
EXCLUDED_FIELDS = ("node_id", "value", "reason")

_ID = re.compile(ID_PATTERN)


def check_id(value: object, name: str) -> str:
    """`value` if it is a group or node id, else `ContractError`.

    >>> check_id("boiler-1", "group")
    'boiler-1'
    """
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ContractError(f"{name} must match {ID_PATTERN}")
    return value


def check_int(value: object, name: str, low: int = 0, high: int = MAX_INT) -> int:
    """`value` if it is an integer (not a bool, not a float) within ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ContractError(f"{name} must be an integer")
    if not low <= value <= high:
        raise ContractError(f"{name} must be between {low} and {high}")
    return value


def check_value(value: object, name: str) -> float:
    """`value` as a float if it is a finite number (not a bool) within ±`MAX_ABS_VALUE`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ContractError(f"{name} must be a number")
    try:
        number = float(value)
    except OverflowError:
        raise ContractError(f"{name} must be a finite number") from None
    if not math.isfinite(number):
        raise ContractError(f"{name} must be a finite number")
    if abs(number) > MAX_ABS_VALUE:
        raise ContractError(f"{name} must be within ±{MAX_ABS_VALUE:g}")
    return number


def check_aggregate(doc: object, latest_ms: int = MAX_INT) -> dict:
    """The aggregate `doc`, checked and normalised (values as floats, lists present).

    Parameters
    ----------
    doc
        The decoded JSON document.
    latest_ms
        The latest acceptable timestamp: the receiver's clock plus the allowed skew.

    Raises
    ------
    ContractError
        Naming the first field that breaks the contract.
    """
    if not isinstance(doc, Mapping):
        raise ContractError("an aggregate must be a JSON object")
    _fields(doc, REQUIRED, OPTIONAL, "")
    return {"group": check_id(doc["group"], "group"),
            "epoch": check_int(doc["epoch"], "epoch"),
            "round": check_int(doc["round"], "round"),
            "timestamp": check_int(doc["timestamp"], "timestamp", 0, min(latest_ms, MAX_INT)),
            "value": check_value(doc["value"], "value"),
            "readings": [_reading(item, f"readings[{i}]")
                         for i, item in enumerate(_list(doc.get("readings", []), "readings"))],
            "excluded": [_excluded(item, f"excluded[{i}]")
                         for i, item in enumerate(_list(doc.get("excluded", []), "excluded"))]}


def _fields(doc: Mapping, required: tuple[str, ...], optional: tuple[str, ...], prefix: str) -> None:
    missing = [f"{prefix}{name}" for name in required if name not in doc]
    if missing:
        raise ContractError(f"missing field(s): {', '.join(missing)}")
    unknown = sorted(f"{prefix}{name}" for name in set(doc) - set(required) - set(optional))
    if unknown:
        raise ContractError(f"unknown field(s): {', '.join(unknown)}")


def _list(value: object, name: str) -> list:
    if not isinstance(value, list):
        raise ContractError(f"{name} must be a list")
    if len(value) > MAX_NODES:
        raise ContractError(f"{name} holds at most {MAX_NODES} entries")
    return value


def _entry(item: object, name: str, fields: tuple[str, ...]) -> Mapping:
    if not isinstance(item, Mapping):
        raise ContractError(f"{name} must be an object with node_id and value")
    _fields(item, fields[:2], fields[2:], f"{name}.")
    return item


def _reading(item: object, name: str) -> dict:
    item = _entry(item, name, READING_FIELDS)
    measured_at = item.get("measured_at")
    return {"node_id": check_id(item["node_id"], f"{name}.node_id"),
            "value": check_value(item["value"], f"{name}.value"),
            "measured_at": None if measured_at is None else check_int(measured_at, f"{name}.measured_at")}


def _excluded(item: object, name: str) -> dict:
    item = _entry(item, name, EXCLUDED_FIELDS)
    reason = item.get("reason", "")
    if not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS:
        raise ContractError(f"{name}.reason must be a string of at most {MAX_REASON_CHARS} characters")
    return {"node_id": check_id(item["node_id"], f"{name}.node_id"),
            "value": check_value(item["value"], f"{name}.value"), "reason": reason}
