"""`EdgeGroup`: ``python -m edge`` processes of one group (``g1``) on a ZooKeeper chroot, for fault tests."""
from __future__ import annotations

from pathlib import Path

from contracts.zk_layout import ZkLayout
from harness.faults.edge_process import EdgeProcess
from harness.faults.event_logs import all_events
from harness.faults.znodes import leader_of
from harness.faults.znodes import set_config
from harness.process import wait_until


class EdgeGroup:
    """Three (or more) ``python -m edge`` processes of group ``g1`` delivering to `urls`.

    `zk` is an admin client on the same chroot as `zk_hosts`; ``sampling_period_s`` and
    ``api_urls`` are written to the cluster config znode before the nodes start.
    """

    def __init__(self, directory: Path, zk, zk_hosts: str, urls: list[str], period_s: float = 0.5,
                 session_timeout: float = 2.0) -> None:
        self.directory = directory
        self.zk = zk
        self.zk_hosts = zk_hosts
        self.period_s = period_s
        self.session_timeout = session_timeout
        self.znodes = ZkLayout().group("g1")
        self.processes: dict[str, EdgeProcess] = {}
        set_config(zk, {"sampling_period_s": period_s, "api_urls": urls})

    def start(self, node_id: str, source: str = "const:20", zk_hosts: str | None = None) -> EdgeProcess:
        process = EdgeProcess(self.directory, "g1", node_id, zk_hosts or self.zk_hosts, source,
                              self.session_timeout)
        self.processes[node_id] = process.start()
        return process

    def leader(self, timeout: float = 15.0, above: int = -1) -> tuple[EdgeProcess, int]:
        """The leading process and its epoch, once an epoch above `above` is published."""
        def probe():
            found = leader_of(self.zk, "g1")
            return found if found and found[1] > above and found[0] in self.processes else None
        node_id, epoch = wait_until(probe, timeout, f"a leader with epoch above {above}")
        return self.processes[node_id], epoch

    def live(self) -> list[str]:
        return sorted(self.zk.get_children(self.znodes.nodes))

    def events(self, kind: str | None = None) -> list[dict]:
        return [e for e in all_events(self.processes.values()) if kind is None or e["kind"] == kind]

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop()
