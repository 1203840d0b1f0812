"""`check_invariants`: invariants I1-I6 (docs/reliability.md) over the aggregates stored and the nodes' event logs."""
from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field

from edge.fusion import fuse
from harness.faults.event_logs import Stored


@dataclass
class Verdict:
    failures: dict[str, list[str]] = field(default_factory=dict)

    def fail(self, invariant: str, message: str) -> None:
        self.failures.setdefault(invariant, []).append(message)

    @property
    def ok(self) -> bool:
        return not self.failures


def check_invariants(stored: list[Stored], events: list[dict], max_gap_s: float | None = None,
                     fusion: tuple[float, float] = (3.5, 0.5)) -> Verdict:
    """Check I1–I6 over the receiver's accepted aggregates and the nodes' event logs.

    I1 one epoch per round; I2 accepted epochs never decrease; I3 each value is the fusion of
    its round's readings (and those readings were measured for that round); I4 timestamps
    strictly increasing in acceptance order; I5 no reading counted in another round;
    I6 no gap between consecutive accepted aggregates longer than `max_gap_s`.
    """
    verdict = Verdict()
    epochs_of_round: dict[int, set[int]] = {}
    sent = {(e["node"], e["epoch"], e["round"]): e["value"] for e in events if e["kind"] == "reading"}
    last_epoch, last_ts, last_arrival = -1, -1, None
    for item in stored:
        doc = item.doc
        epochs_of_round.setdefault(doc["round"], set()).add(doc["epoch"])
        if doc["epoch"] < last_epoch:
            verdict.fail("I2", f"epoch {doc['epoch']} accepted after {last_epoch}")
        last_epoch = max(last_epoch, doc["epoch"])
        if doc["timestamp"] <= last_ts:
            verdict.fail("I4", f"timestamp {doc['timestamp']} after {last_ts}")
        last_ts = doc["timestamp"]
        values = {r["node_id"]: r["value"] for r in doc["readings"] + doc["excluded"]}
        expected = fuse(values, *fusion).value if values else None
        if expected is None or abs(expected - doc["value"]) > 1e-9:
            verdict.fail("I3", f"round {doc['round']}: value {doc['value']} != fusion {expected}")
        for node, value in values.items():
            if sent.get((node, doc["epoch"], doc["round"])) != value:
                verdict.fail("I5", f"round {doc['round']}: {node}'s {value} was not measured for it")
        if max_gap_s is not None and last_arrival is not None and item.arrived - last_arrival > max_gap_s:
            verdict.fail("I6", f"{item.arrived - last_arrival:.2f} s before round {doc['round']}")
        last_arrival = item.arrived
    for round_, epochs in epochs_of_round.items():
        if len(epochs) > 1:
            verdict.fail("I1", f"round {round_} accepted from epochs {sorted(epochs)}")
    return verdict
