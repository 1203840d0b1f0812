"""The ZooKeeper layout: every znode the edge and the web tier share, built from the root here only.

The table in docs/edge.md ("ZooKeeper layout") says who writes each znode and what it holds;
`ZkLayout` builds the cluster's paths and `GroupZnodes` a group's. The edge writes and watches
them (`edge.node`, `edge.leader`, `edge.hotconfig`); the web tier reads them and writes the
config (`webapp.cluster`, `webapp.epochs`). ``tests/test_contracts.py`` holds the docs'
table, this module and both sides' use of it together.

Examples
--------
>>> layout = ZkLayout("/aeroguard")
>>> layout.config, layout.groups
('/aeroguard/config', '/aeroguard/groups')
>>> g1 = layout.group("g1")
>>> g1.epoch, g1.trigger, g1.node("n1")
('/aeroguard/groups/g1/epoch', '/aeroguard/groups/g1/sequence_trigger', '/aeroguard/groups/g1/nodes/n1')
"""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_ROOT = "/aeroguard"


@dataclass(frozen=True)
class GroupZnodes:
    """The znodes of one edge group, under ``<root>/groups/<group>``."""

    base: str

    @property
    def config(self) -> str:
        """The group's config overrides (JSON, `contracts.config`)."""
        return f"{self.base}/config"

    @property
    def nodes(self) -> str:
        """Parent of the live nodes' ephemeral znodes (discovery)."""
        return f"{self.base}/nodes"

    def node(self, node_id: str) -> str:
        """One live node's ephemeral znode."""
        return f"{self.nodes}/{node_id}"

    @property
    def election(self) -> str:
        """kazoo's `Election` of the group: its children's sequence numbers are the epochs."""
        return f"{self.base}/election"

    @property
    def epoch(self) -> str:
        """The current term, written by its leader (fenced)."""
        return f"{self.base}/epoch"

    @property
    def trigger(self) -> str:
        """The leader's round trigger (fenced)."""
        return f"{self.base}/sequence_trigger"

    @property
    def queue(self) -> str:
        """kazoo's `LockingQueue` of the followers' readings."""
        return f"{self.base}/queue"


class ZkLayout:
    """The AeroGuard tree under `root` (``ZK_ROOT``, default ``/aeroguard``)."""

    def __init__(self, root: str = DEFAULT_ROOT) -> None:
        self.root = root.rstrip("/")

    @property
    def config(self) -> str:
        """The cluster config, for every group (JSON, `contracts.config`)."""
        return f"{self.root}/config"

    @property
    def groups(self) -> str:
        """Parent of every group's znodes: its children are the group names."""
        return f"{self.root}/groups"

    def group(self, group: str) -> GroupZnodes:
        return GroupZnodes(f"{self.groups}/{group}")
