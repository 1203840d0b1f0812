"""AeroGuard's edge node: redundant sensor nodes coordinated by ZooKeeper.

One process per sensor node (`python -m edge`). The nodes of a group elect a leader with
kazoo's `Election`; the leader triggers synchronised rounds, collects every node's reading
from a `LockingQueue`, fuses them robustly and delivers one aggregate per round to the web
tier, spooling to disk when no web replica answers. See ``docs/edge.md``.
"""
from __future__ import annotations

__version__ = "0.1.0"
