"""Parsing and validation of request input: sensor ids, readings and edge aggregates.

Everything a request says passes through here before it reaches storage or a model. A
failure raises `BadInput` naming the field, and nothing is stored.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from webapp.config import SENSOR_PATTERN
from webapp.errors import BadInput

_SENSOR = re.compile(SENSOR_PATTERN)
# A plain decimal number: no "nan", "inf", hex, underscores ("1_0") or non-ASCII digits,
# all of which Python's float() would accept.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")
_MAX_NUMBER_CHARS = 64
# No physical sensor reads beyond this; larger finite numbers (1e308) would overflow the
# float32 arithmetic of the models and are refused like infinities.
MAX_ABS_VALUE = 1e9
_MAX_INT = 2**62


def parse_value(text: str | None, name: str = "dato") -> float:
    """A finite float from a query parameter.

    >>> parse_value("21.5")
    21.5
    >>> parse_value("1e999")
    Traceback (most recent call last):
    webapp.errors.BadInput: dato must be a finite number
    """
    if text is None or not text.strip():
        raise BadInput(f"{name} is required")
    text = text.strip()
    if len(text) > _MAX_NUMBER_CHARS or not _NUMBER.fullmatch(text):
        raise BadInput(f"{name} must be a number")
    return finite(float(text), name)


def finite(value: object, name: str) -> float:
    """`value` as a float if it is a finite JSON number (not a bool), else `BadInput`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadInput(f"{name} must be a number")
    try:
        number = float(value)
    except OverflowError:
        raise BadInput(f"{name} must be a finite number") from None
    if not math.isfinite(number):
        raise BadInput(f"{name} must be a finite number")
    if abs(number) > MAX_ABS_VALUE:
        raise BadInput(f"{name} must be within ±{MAX_ABS_VALUE:g}")
    return number


def integer(value: object, name: str, low: int = 0, high: int = _MAX_INT) -> int:
    """`value` if it is a JSON integer within ``[low, high]``, else `BadInput`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInput(f"{name} must be an integer")
    if not low <= value <= high:
        raise BadInput(f"{name} must be between {low} and {high}")
    return value


def parse_int(text: str | None, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within ``[low, high]``, or `default` when absent."""
    if text is None or text == "":
        return default
    if len(text) > 20 or not re.fullmatch(r"[+-]?[0-9]+", text):
        raise BadInput(f"{name} must be an integer")
    return integer(int(text), name, low, high)


def sensor_id(value: object, name: str = "sensor") -> str:
    """`value` if it is a valid sensor id (``[A-Za-z0-9_.-]{1,64}``), else `BadInput`."""
    if not isinstance(value, str) or not _SENSOR.fullmatch(value):
        raise BadInput(f"{name} must match {SENSOR_PATTERN}")
    return value


@dataclass(frozen=True)
class NodeReading:
    node_id: str
    value: float
    measured_at: int | None = None

    def as_dict(self) -> dict:
        return {"node_id": self.node_id, "value": self.value, "measured_at": self.measured_at}


@dataclass(frozen=True)
class Excluded:
    node_id: str
    value: float
    reason: str

    def as_dict(self) -> dict:
        return {"node_id": self.node_id, "value": self.value, "reason": self.reason}


@dataclass(frozen=True)
class Aggregate:
    """One round's fused reading from an edge group's leader."""

    group: str
    epoch: int
    round: int
    timestamp: int
    value: float
    readings: tuple[NodeReading, ...]
    excluded: tuple[Excluded, ...]

    @property
    def key(self) -> str:
        return f"{self.group}:{self.epoch}:{self.round}"


_AGGREGATE_FIELDS = {"group", "epoch", "round", "timestamp", "value", "readings", "excluded"}
_MAX_NODES = 64


def parse_aggregate(body: object, now_ms: int, max_skew_ms: int) -> Aggregate:
    """An `Aggregate` from one JSON object, or `BadInput` naming what is wrong.

    Timestamps are milliseconds since the Unix epoch and may not lie more than
    `max_skew_ms` in the future of `now_ms`.
    """
    if not isinstance(body, Mapping):
        raise BadInput("an aggregate must be a JSON object")
    missing = sorted(_AGGREGATE_FIELDS - {"readings", "excluded"} - set(body))
    if missing:
        raise BadInput(f"missing field(s): {', '.join(missing)}")
    unknown = sorted(set(body) - _AGGREGATE_FIELDS)
    if unknown:
        raise BadInput(f"unknown field(s): {', '.join(unknown)}")
    timestamp = integer(body["timestamp"], "timestamp", 0, now_ms + max_skew_ms)
    readings = _list(body.get("readings", []), "readings")
    excluded = _list(body.get("excluded", []), "excluded")
    return Aggregate(
        group=sensor_id(body["group"], "group"),
        epoch=integer(body["epoch"], "epoch"),
        round=integer(body["round"], "round"),
        timestamp=timestamp,
        value=finite(body["value"], "value"),
        readings=tuple(_node_reading(r, f"readings[{i}]") for i, r in enumerate(readings)),
        excluded=tuple(_excluded(e, f"excluded[{i}]") for i, e in enumerate(excluded)),
    )


def _list(value: object, name: str) -> list:
    if not isinstance(value, list):
        raise BadInput(f"{name} must be a list")
    if len(value) > _MAX_NODES:
        raise BadInput(f"{name} holds at most {_MAX_NODES} entries")
    return value


def _node_reading(item: object, name: str) -> NodeReading:
    if not isinstance(item, Mapping) or "node_id" not in item or "value" not in item:
        raise BadInput(f"{name} must be an object with node_id and value")
    measured_at = item.get("measured_at")
    return NodeReading(
        node_id=sensor_id(item["node_id"], f"{name}.node_id"),
        value=finite(item["value"], f"{name}.value"),
        measured_at=None if measured_at is None else integer(measured_at, f"{name}.measured_at"),
    )


def _excluded(item: object, name: str) -> Excluded:
    if not isinstance(item, Mapping) or "node_id" not in item or "value" not in item:
        raise BadInput(f"{name} must be an object with node_id and value")
    reason = item.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 200:
        raise BadInput(f"{name}.reason must be a string of at most 200 characters")
    return Excluded(sensor_id(item["node_id"], f"{name}.node_id"), finite(item["value"], f"{name}.value"), reason)
