"""The contracts between the edge and the web tier, each defined once and loaded by both.

`contracts.aggregate` is what a leader POSTs to ``/api/v1/readings`` each round;
`contracts.config` is the hot configuration the web tier writes to ZooKeeper and every edge
node applies; `contracts.zk_layout` builds the path of every znode the two share. This package
is pure Python and imports nothing from `webapp` or `edge` (which never import each other):
each side calls the same checks and turns `ContractError` into its own error — `BadInput` (400)
on the web tier, `SchemaError` / `ConfigError` on the edge — so the two cannot drift apart
(``tests/test_contracts.py`` checks it on generated documents).
"""
from __future__ import annotations


class ContractError(ValueError):
    """Raised when a document breaks a contract; the message names the field."""
