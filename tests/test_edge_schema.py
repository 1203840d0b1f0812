"""The aggregate contract: the edge and the web tier, loading ``contracts/``, accept the same documents.

A table of named cases; ``tests/test_contracts.py`` checks the same on generated documents.
"""
from __future__ import annotations

import pytest

from edge.schema import Reading
from edge.schema import SchemaError
from edge.schema import aggregate
from edge.schema import validate_aggregate
from webapp.errors import BadInput
from webapp.validation import parse_aggregate

NOW = 1_763_770_000_123
GOOD = {"group": "boiler-1", "epoch": 17, "round": 42, "timestamp": NOW, "value": 71.3,
        "readings": [{"node_id": "n1", "value": 71.2, "measured_at": NOW - 20}],
        "excluded": [{"node_id": "n3", "value": 150.0, "reason": "beyond 3.5 MAD of median"}]}

CASES = [
    (GOOD, True),
    ({**GOOD, "readings": [], "excluded": []}, True),
    ({k: v for k, v in GOOD.items() if k not in ("readings", "excluded")}, True),
    ({**GOOD, "group": "bad group"}, False),
    ({**GOOD, "group": "x" * 65}, False),
    ({**GOOD, "epoch": -1}, False),
    ({**GOOD, "round": 1.5}, False),
    ({**GOOD, "value": float("nan")}, False),
    ({**GOOD, "value": "71"}, False),
    ({**GOOD, "extra": 1}, False),
    ({k: v for k, v in GOOD.items() if k != "value"}, False),
    ({**GOOD, "readings": [{"node_id": "n1"}]}, False),
    ({**GOOD, "readings": [{"node_id": "n 1", "value": 1.0}]}, False),
    ({**GOOD, "excluded": [{"node_id": "n3", "value": float("inf")}]}, False),
    ({**GOOD, "readings": "n1"}, False),
    ([GOOD], False),
    ({**GOOD, "value": 1e9}, True),
    ({**GOOD, "value": 2e9}, False),
    ({**GOOD, "excluded": [{"node_id": "n3", "value": 1.0, "reason": "x" * 200}]}, True),
    ({**GOOD, "excluded": [{"node_id": "n3", "value": 1.0, "reason": "x" * 201}]}, False),
    ({**GOOD, "readings": [{"node_id": "n1", "value": 1.0, "measured_at": 1.5}]}, False),
    ({**GOOD, "readings": [{"node_id": "n1", "value": 1.0, "colour": "red"}]}, False),
    ({**GOOD, "timestamp": NOW + 5_000}, True),
    ({**GOOD, "timestamp": NOW + 5_001}, False),
]


@pytest.mark.parametrize("doc, valid", CASES)
def test_edge_and_web_tier_agree(doc, valid):
    try:
        validate_aggregate(doc, NOW)
        edge_ok = True
    except SchemaError:
        edge_ok = False
    try:
        parse_aggregate(doc, NOW, 5_000)
        web_ok = True
    except BadInput:
        web_ok = False
    assert (edge_ok, web_ok) == (valid, valid)


def test_aggregate_builds_a_valid_document():
    doc = aggregate("g", 1, 2, NOW, 20.0, [{"node_id": "n1", "value": 20.0, "measured_at": NOW}], [])
    assert parse_aggregate(doc, NOW, 0).key == "g:1:2"


@pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"node_id": "n1"}',
                                 b'{"node_id": "n1", "round": 1, "epoch": 1, "value": null, "measured_at": 1}',
                                 b'{"node_id": "n1", "round": 1, "epoch": 1, "value": 2e9, "measured_at": 1}',
                                 b'{"node_id": "n1", "round": 1, "epoch": 1, "value": 1, "measured_at": 1.5}'])
def test_malformed_queue_entries_raise(raw):
    with pytest.raises(SchemaError):
        Reading.from_bytes(raw)


def test_a_reading_beyond_the_contract_never_reaches_an_aggregate():
    """A follower's 2e9 is refused on the queue, so it cannot make the leader's aggregate unsendable."""
    with pytest.raises(SchemaError, match="value must be within"):
        Reading.from_bytes(Reading("n2", 1, 1, 2e9, NOW).to_bytes())
