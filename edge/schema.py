"""The aggregate a leader sends per round, and the reading a node puts on the queue.

The web tier keeps its own copy of these rules (``webapp/validation.py``); a shared test
(``tests/test_edge_schema.py``) runs both over the same cases so the copies stay honest.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class SchemaError(ValueError):
    """Raised when a reading or an aggregate breaks the contract; the message names the field."""


def check_id(value: object, name: str) -> str:
    """Return `value` if it is a valid group or node id, else raise `SchemaError`.

    >>> check_id("boiler-1", "group")
    'boiler-1'
    """
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise SchemaError(f"{name} must match {ID_PATTERN.pattern}")
    return value


def check_count(value: object, name: str) -> int:
    """Return `value` if it is an int ≥ 0 (not a bool), else raise `SchemaError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SchemaError(f"{name} must be an integer >= 0")
    return value


def check_finite(value: object, name: str) -> float:
    """Return `value` as a float if it is a finite number, else raise `SchemaError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SchemaError(f"{name} must be a finite number")
    return float(value)


@dataclass(frozen=True)
class Reading:
    """One node's measurement for one round, as put on the group's queue.

    Examples
    --------
    >>> r = Reading("n1", 4, 17, 71.2, 1763770000100)
    >>> Reading.from_bytes(r.to_bytes()) == r
    True
    """

    node_id: str
    round: int
    epoch: int
    value: float
    measured_at: int

    def to_bytes(self) -> bytes:
        return json.dumps({"node_id": self.node_id, "round": self.round, "epoch": self.epoch,
                           "value": self.value, "measured_at": self.measured_at}).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Reading:
        """Parse a queue entry; raise `SchemaError` on anything malformed."""
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise SchemaError(f"reading is not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise SchemaError("reading must be a JSON object")
        try:
            return cls(check_id(doc["node_id"], "node_id"), check_count(doc["round"], "round"),
                       check_count(doc["epoch"], "epoch"), check_finite(doc["value"], "value"),
                       check_count(doc["measured_at"], "measured_at"))
        except KeyError as exc:
            raise SchemaError(f"reading lacks {exc.args[0]}") from exc


def aggregate(group: str, epoch: int, round_: int, timestamp: int, value: float,
              readings: list[dict], excluded: list[dict]) -> dict:
    """Build and validate the aggregate dict POSTed to ``/api/v1/readings``.

    Examples
    --------
    >>> agg = aggregate("boiler-1", 17, 42, 1763770000123, 71.3,
    ...                 [{"node_id": "n1", "value": 71.3, "measured_at": 1763770000100}], [])
    >>> idempotency_key(agg)
    'boiler-1:17:42'
    """
    doc = {"group": group, "epoch": epoch, "round": round_, "timestamp": timestamp,
           "value": value, "readings": readings, "excluded": excluded}
    validate_aggregate(doc)
    return doc


def validate_aggregate(doc: object) -> None:
    """Raise `SchemaError` unless `doc` is a well-formed aggregate (the web tier's rules)."""
    if not isinstance(doc, dict):
        raise SchemaError("an aggregate must be a JSON object")
    fields = {"group", "epoch", "round", "timestamp", "value", "readings", "excluded"}
    missing = fields - {"readings", "excluded"} - set(doc)
    if missing:
        raise SchemaError(f"missing field(s): {', '.join(sorted(missing))}")
    if set(doc) - fields:
        raise SchemaError(f"unknown field(s): {', '.join(sorted(set(doc) - fields))}")
    check_id(doc["group"], "group")
    check_count(doc["epoch"], "epoch")
    check_count(doc["round"], "round")
    check_count(doc["timestamp"], "timestamp")
    check_finite(doc["value"], "value")
    for name in ("readings", "excluded"):
        items = doc.get(name, [])
        if not isinstance(items, list) or len(items) > 64:
            raise SchemaError(f"{name} must be a list of at most 64 entries")
        for i, item in enumerate(items):
            if not isinstance(item, dict) or "node_id" not in item or "value" not in item:
                raise SchemaError(f"{name}[{i}] must be an object with node_id and value")
            check_id(item["node_id"], f"{name}[{i}].node_id")
            check_finite(item["value"], f"{name}[{i}].value")


def idempotency_key(doc: dict) -> str:
    """``group:epoch:round``: the web tier stores each key at most once."""
    return f"{doc['group']}:{doc['epoch']}:{doc['round']}"
