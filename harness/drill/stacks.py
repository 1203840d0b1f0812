"""The stack the drill puts under fault: the ``make up`` one (`AttachedStack`) or a private one (`OwnStack`).

Both offer what `harness.drill.runner.Drill` needs: ``hosts``, ``group``, ``root``, ``period``,
``T``, ``edges``, ``ensemble``, ``web``, ``recorder`` (what the web tier stored), ``api_urls``,
and ``prepare``/``up``/``check_store``/``heal``/``down``.
"""
from __future__ import annotations

import json
import signal
import sys
import urllib.parse
import urllib.request
from pathlib import Path

from kazoo.exceptions import NoNodeError

from harness.drill.web_tier import Recorder
from harness.drill.web_tier import WebTier
from harness.faults.edge_process import EdgeProcess
from harness.faults.event_logs import DeliveryLog
from harness.faults.event_logs import EventTail
from harness.faults.event_logs import Stored
from harness.faults.recorded import RecordedEdge
from harness.faults.recorded import RecordedEnsemble
from harness.faults.recorded import RecordedWeb
from harness.faults.znodes import set_config
from harness.process import ServerError
from harness.process import free_port
from harness.process import free_ports
from harness.redis_server import RedisServer
from harness.stack import launcher
from harness.stack.config import StackConfig
from harness.stack.services import ZK_TICK_MS
from harness.zookeeper import ZooKeeperEnsemble

GROUP = "drill"
TICK_S = ZK_TICK_MS / 1000


class OwnStack:
    """A private stack (`harness.zookeeper`, `harness.redis_server`) and three `EdgeProcess`es of group ``drill``.

    The web tier runs in this process behind a `Recorder`; everything is removed by `down`.
    """

    def __init__(self, directory: Path, period: float, session_timeout: float) -> None:
        self.dir = directory
        self.group, self.root = GROUP, "/aeroguard"
        self.period, self.T = period, session_timeout
        self.ensemble = ZooKeeperEnsemble(directory / "zk", free_ports(3), tick_ms=int(TICK_S * 1000))
        self.redis = RedisServer(directory / "redis", free_port())
        self.edges: dict[str, EdgeProcess] = {}
        self.web: WebTier | None = None

    @property
    def hosts(self) -> str:
        return self.ensemble.hosts

    @property
    def api_urls(self) -> list[str]:
        return [self.web.url]

    @property
    def recorder(self) -> Recorder:
        return self.web.recorder

    def up(self, zk) -> None:
        from webapp.config import Settings

        self.redis.start()
        self.redis.wait_ready(30)
        self.web = WebTier(Settings().replace(redis_url=self.redis.url, zk_hosts=self.hosts, key_prefix="drill:",
                                    hostname="drill-web", env="local"))
        self.web.start()
        set_config(zk, {"sampling_period_s": self.period, "api_urls": self.api_urls})
        for i in (1, 2, 3):
            self.edges[f"edge-{i}"] = EdgeProcess(self.dir, GROUP, f"edge-{i}", self.hosts,
                                                  "sim:base=60,amplitude=1,noise=0.05", self.T).start()

    def prepare(self) -> None:
        self.ensemble.start()
        self.ensemble.wait_ready(60)

    def check_store(self, stored: list[Stored]) -> tuple[bool, str]:
        return True, ""  # the recorder wraps the web tier itself

    def heal(self) -> None:
        """Nothing to do: `down` removes the whole private stack."""

    def down(self) -> None:
        for edge in self.edges.values():
            edge.stop()
        if self.web is not None:
            self.web.stop()
            if self.web.app.extensions.get("zk"):
                self.web.app.extensions["zk"].stop()
        self.redis.stop()
        self.ensemble.stop()


class AttachedStack:
    """The stack ``make up`` started, from its stack.json; started the same way when none runs.

    Edge nodes are the ``edge-N`` records (their group, node id, session timeout and event log
    are read from their command lines), ZooKeeper the ``zookeeper-N`` records, the web tier
    ``web``. `heal` restarts any of them that is not running, so the drill leaves the stack whole.
    """

    def __init__(self, config: StackConfig, since: float) -> None:
        self.config = config
        self.started_stack = self._ensure_running()
        stack = launcher.load_stack(config)
        names = {rec["name"]: rec for rec in stack["services"]}
        missing = [n for n in ("zookeeper-1", "zookeeper-2", "zookeeper-3", "web", "edge-1") if n not in names]
        if missing:
            raise ServerError(f"the stack in {config.state_dir} lacks {missing}: run the whole stack (`make up`)")
        self.edges: dict[str, RecordedEdge] = {}
        settings = None
        for rec in stack["services"]:
            if rec["name"].startswith("edge-"):
                settings = self._edge_settings(rec, stack)
                tail = EventTail(Path(settings.event_log), since)
                self.edges[settings.node_id] = RecordedEdge(config, rec, settings.node_id, tail)
        self.group, self.root, self.T = settings.group, settings.zk_root, settings.session_timeout_s
        self.period = self.default_period = settings.defaults["sampling_period_s"]
        self.api_urls = list(settings.defaults.get("api_urls") or [names["web"]["url"]])
        self.ensemble = RecordedEnsemble(config, stack)
        self.web = RecordedWeb(config, names["web"])
        self.recorder = DeliveryLog([edge.tail for edge in self.edges.values()])

    def _ensure_running(self) -> bool:
        """Start the stack as ``make up`` does when none runs; True when this call started it."""
        stack = launcher.load_stack(self.config)
        if stack is not None and any(launcher.record_alive(rec) for rec in stack["services"]):
            return False
        print(f"drill: no stack runs in {self.config.state_dir}; starting one as `make up` does", file=sys.stderr)
        self.config.stack_file.unlink(missing_ok=True)
        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        services, exports = launcher.start_services(self.config)
        launcher.write_stack(self.config, services, exports)
        return True

    @staticmethod
    def _edge_settings(rec: dict, stack: dict):
        """The node's settings parsed from its recorded command line, as the node parsed them."""
        from edge.config import EdgeSettings

        if rec.get("argv", [])[1:3] != ["-m", "edge"]:
            raise ServerError(f"{rec['name']} has no recorded command line: `make down`, then `make up`")
        settings = EdgeSettings.from_args(rec["argv"][3:], {**launcher.base_env(), **stack["env"]})
        if not settings.event_log:
            raise ServerError(f"{rec['name']} runs without --event-log: the drill cannot check it")
        return settings

    @property
    def hosts(self) -> str:
        return self.ensemble.hosts

    def up(self, zk) -> None:
        """Read the period in force (the cluster config's, else the nodes' default)."""
        try:
            doc = json.loads(zk.get(f"{self.root}/config")[0] or b"{}")
        except (NoNodeError, ValueError):
            doc = {}
        self.period = float(doc.get("sampling_period_s", self.default_period))

    def prepare(self) -> None:
        self.heal()

    def check_store(self, stored: list[Stored]) -> tuple[bool, str]:
        """Compare the aggregates the edges saw stored with the web tier's series over their span."""
        if not stored:
            return True, ""
        stamps = sorted(s.doc["timestamp"] for s in stored)
        query = urllib.parse.urlencode({"sensor": self.group, "from": stamps[0], "to": stamps[-1],
                                        "count": 10_000})
        with urllib.request.urlopen(f"{self.web.url}/listar?{query}", timeout=10) as response:
            series = [r["timestamp"] for r in json.load(response)["readings"]]
        extra, absent = sorted(set(series) - set(stamps)), sorted(set(stamps) - set(series))
        ok = not extra and not absent and len(series) == len(stamps)
        return ok, ("" if ok else f"web tier series differs: {len(absent)} not stored, {len(extra)} unexpected, "
                    f"{len(series)} samples for {len(stamps)} aggregates")

    def heal(self) -> None:
        """Resume paused nodes, restart what is not running (ZooKeeper, web, edges), wait until ready."""
        for edge in self.edges.values():
            edge.signal(signal.SIGCONT)
        for i, node in enumerate(self.ensemble.nodes):
            if not node.alive():
                print(f"drill: restarting {node.name}", file=sys.stderr)
                self.ensemble.start_node(i)
        self.ensemble.wait_ready(60)
        if not self.web.process.alive():
            print("drill: restarting web", file=sys.stderr)
        self.web.start()
        for edge in self.edges.values():
            if not edge.alive():
                print(f"drill: restarting {edge.name}", file=sys.stderr)
                edge.start()

    def down(self) -> None:
        """The stack stays up (``make down`` stops it)."""
