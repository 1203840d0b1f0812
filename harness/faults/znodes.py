"""The znodes a drill or a fault test reads and writes: a group's term (`leader_of`), the config;
expiring a session (`expire_session`)."""
from __future__ import annotations

import json

from contracts.zk_layout import DEFAULT_ROOT
from contracts.zk_layout import ZkLayout


def leader_of(zk, group: str, root: str = DEFAULT_ROOT) -> tuple[str, int] | None:
    """``(node_id, epoch)`` of the group's current term from its epoch znode, or None."""
    from kazoo.exceptions import KazooException

    try:
        data, _ = zk.get(ZkLayout(root).group(group).epoch)
        doc = json.loads(data)
        return doc["leader"], doc["epoch"]
    except (KazooException, ValueError, KeyError, TypeError):
        return None


def set_config(zk, doc: dict | str, root: str = DEFAULT_ROOT, group: str | None = None) -> None:
    """Write the cluster (or a group's) config znode; `doc` may be raw text (to test bad JSON)."""
    path = ZkLayout(root).group(group).config if group else ZkLayout(root).config
    data = (doc if isinstance(doc, str) else json.dumps(doc)).encode()
    if zk.exists(path):
        zk.set(path, data)
    else:
        zk.create(path, data, makepath=True)


def expire_session(hosts: str, client_id: tuple[int, bytes]) -> None:
    """Expire a session server-side: a second client with its id and password closes it.

    The twin connects without the chroot of `hosts`: kazoo checks a chroot with a read right
    after connecting, which the server may answer by dropping the taken-over connection.
    """
    from kazoo.client import KazooClient

    twin = KazooClient(hosts=hosts.split("/", 1)[0], client_id=client_id, timeout=2.0)
    twin.start(timeout=10)
    twin.stop()
    twin.close()
