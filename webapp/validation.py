"""Parsing and validation of request input: sensor ids, readings and edge aggregates.

Everything a request says passes through here before it reaches storage or a model. A
failure raises `BadInput` naming the field, and nothing is stored. The aggregate's rules are
the contract shared with the edge (``contracts/aggregate.py``): the web tier refuses exactly
what the edge refuses before sending.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from contracts import ContractError
from contracts import aggregate as contract
from webapp.config import SENSOR_PATTERN
from webapp.errors import BadInput

_SENSOR = re.compile(SENSOR_PATTERN)
# A plain decimal number: no "nan", "inf", hex, underscores ("1_0") or non-ASCII digits,
# all of which Python's float() would accept.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")
_MAX_NUMBER_CHARS = 64
# No physical sensor reads beyond this (the contract's bound, for readings and aggregates alike).
MAX_ABS_VALUE = contract.MAX_ABS_VALUE


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
    """`value` as a float if it is a finite JSON number (not a bool) within ±1e9, else `BadInput`."""
    try:
        return contract.check_value(value, name)
    except ContractError as exc:
        raise BadInput(str(exc)) from None


def integer(value: object, name: str, low: int = 0, high: int = contract.MAX_INT) -> int:
    """`value` if it is a JSON integer within ``[low, high]``, else `BadInput`."""
    try:
        return contract.check_int(value, name, low, high)
    except ContractError as exc:
        raise BadInput(str(exc)) from None


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


def parse_aggregate(body: object, now_ms: int, max_skew_ms: int) -> Aggregate:
    """An `Aggregate` from one JSON object, or `BadInput` naming what is wrong.

    Timestamps are milliseconds since the Unix epoch and may not lie more than
    `max_skew_ms` in the future of `now_ms`.

    >>> parse_aggregate({"group": "g", "epoch": 1, "round": 2, "timestamp": 5, "value": 2e9}, 10, 0)
    Traceback (most recent call last):
    webapp.errors.BadInput: value must be within ±1e+09
    """
    try:
        doc = contract.check_aggregate(body, now_ms + max_skew_ms)
    except ContractError as exc:
        raise BadInput(str(exc)) from None
    return Aggregate(group=doc["group"], epoch=doc["epoch"], round=doc["round"], timestamp=doc["timestamp"],
                     value=doc["value"], readings=tuple(NodeReading(**r) for r in doc["readings"]),
                     excluded=tuple(Excluded(**e) for e in doc["excluded"]))


_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def idempotency_key(value: str | None) -> str | None:
    """The ``Idempotency-Key`` header if given: 1 to 128 of ``[A-Za-z0-9_.:-]``, else `BadInput`.

    >>> idempotency_key("boiler-1:7:42")
    'boiler-1:7:42'
    """
    if value is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(value):
        raise BadInput("Idempotency-Key must be 1 to 128 of [A-Za-z0-9_.:-]")
    return value
