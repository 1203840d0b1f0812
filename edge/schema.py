"""The aggregate a leader sends per round, and the reading a node puts on the queue.

The rules are the aggregate contract (``contracts/aggregate.py``), which the web tier loads
too: the edge refuses exactly what the web tier would answer 400 to. This module turns the
contract's errors into `SchemaError`.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

from contracts import ContractError
from contracts import aggregate as contract


class SchemaError(ValueError):
    """Raised when a reading or an aggregate breaks the contract; the message names the field."""


def check_id(value: object, name: str) -> str:
    """Return `value` if it is a valid group or node id, else raise `SchemaError`.

    >>> check_id("boiler-1", "group")
    'boiler-1'
    """
    try:
        return contract.check_id(value, name)
    except ContractError as exc:
        raise SchemaError(str(exc)) from None


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
        """Parse a queue entry; raise `SchemaError` on anything malformed.

        Ids, integers and the value follow the aggregate contract, so a reading the leader
        accepts can always be sent (a value beyond ±1e9 is refused here, not by the web tier).
        """
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise SchemaError(f"reading is not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise SchemaError("reading must be a JSON object")
        try:
            return cls(contract.check_id(doc["node_id"], "node_id"), contract.check_int(doc["round"], "round"),
                       contract.check_int(doc["epoch"], "epoch"), contract.check_value(doc["value"], "value"),
                       contract.check_int(doc["measured_at"], "measured_at"))
        except KeyError as exc:
            raise SchemaError(f"reading lacks {exc.args[0]}") from exc
        except ContractError as exc:
            raise SchemaError(str(exc)) from None


def aggregate(group: str, epoch: int, round_: int, timestamp: int, value: float,
              readings: list[dict], excluded: list[dict]) -> dict:
    """Build the aggregate dict POSTed to ``/api/v1/readings``.

    It is not checked here (the leader must not fail a round on it): `edge.delivery.Delivery`
    checks every aggregate with `validate_aggregate` before sending, and keeps and reports one
    that breaks the contract instead of sending it.

    Examples
    --------
    >>> agg = aggregate("boiler-1", 17, 42, 1763770000123, 71.3,
    ...                 [{"node_id": "n1", "value": 71.3, "measured_at": 1763770000100}], [])
    >>> idempotency_key(agg)
    'boiler-1:17:42'
    """
    return {"group": group, "epoch": epoch, "round": round_, "timestamp": timestamp,
            "value": value, "readings": readings, "excluded": excluded}


def validate_aggregate(doc: object, now_ms: int | None = None) -> None:
    """Raise `SchemaError` unless `doc` is an aggregate the web tier accepts.

    Its timestamp may lie at most the contract's skew ahead of `now_ms` (default: this
    node's clock), as on the web tier with its default ``MAX_FUTURE_SKEW_S``.

    >>> validate_aggregate({"group": "g", "epoch": 1, "round": 1, "timestamp": 5, "value": 1,
    ...                     "excluded": [{"node_id": "n3", "value": 9, "reason": "x" * 201}]})
    Traceback (most recent call last):
    edge.schema.SchemaError: excluded[0].reason must be a string of at most 200 characters
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    try:
        contract.check_aggregate(doc, now + contract.MAX_FUTURE_SKEW_MS)
    except ContractError as exc:
        raise SchemaError(str(exc)) from None


def idempotency_key(doc: dict) -> str:
    """``group:epoch:round``: the web tier stores each key at most once."""
    return f"{doc['group']}:{doc['epoch']}:{doc['round']}"
