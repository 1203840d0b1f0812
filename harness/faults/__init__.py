"""Fault tools shared by the edge fault drill (`harness.drill`) and the edge fault tests.

- `harness.faults.edge_process`: `EdgeProcess`, one ``python -m edge`` with an event log;
- `harness.faults.recorded`: `RecordedProcess` drives one process of a running ``make up``
  stack from its stack.json record (`RecordedEdge`, `RecordedEnsemble`, `RecordedWeb`: its edge
  nodes, ZooKeeper and web tier, restarted through `harness.stack.launcher.restart`);
- `harness.faults.event_logs`: `EventTail` reads a node's event log incrementally and
  `DeliveryLog` rebuilds from those logs what the web tier stored (`Stored`);
- `harness.faults.proxy`: `BlackHoleProxy` forwards a TCP port until told to swallow traffic
  (a network partition without root);
- `harness.faults.invariants`: `check_invariants` verifies invariants I1-I6 (docs/reliability.md) over what the
  web tier stored and the nodes' event logs;
- `harness.faults.znodes`: `leader_of` and `set_config` read and write the znodes a drill needs.
"""
