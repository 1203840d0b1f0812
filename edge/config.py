"""Settings of one edge node: built once from the command line and the environment.

This is the only module of `edge` that reads ``os.environ`` or ``sys.argv``. Everything
else receives the frozen `EdgeSettings` (or the part it needs). Values that may change at
run time (period, URLs, timeouts, fusion bound) are *defaults* here and live in ZooKeeper
(``<root>/config``, ``<root>/groups/<g>/config``), applied by `edge.hotconfig`.

Environment (each overridden by its option): ``ZK_HOSTS``, ``ZK_ROOT`` (``/aeroguard``),
``EDGE_GROUP``, ``EDGE_NODE_ID``, ``EDGE_SESSION_TIMEOUT_S`` (5), ``EDGE_SOURCE`` (``sim``),
``EDGE_SPOOL_DIR``, ``EDGE_SPOOL_MAX`` (100000), ``EDGE_EVENT_LOG``, ``AEROGUARD_API_URLS``
(comma-separated, used until ZooKeeper holds a config), ``AEROGUARD_API_KEY`` (an ingest
key valid for the group), ``ZK_AUTH`` or ``ZK_AUTH_FILE`` (``user:password``, ZooKeeper digest
credentials shared with the web tier), ``EDGE_PERIOD_S`` (1.0), ``LOG_LEVEL``.
"""
from __future__ import annotations

import argparse
import os
import re
import socket
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field

from edge.schema import check_id


@dataclass(frozen=True)
class EdgeSettings:
    """Static settings of one node. Build with `EdgeSettings.from_args`.

    Parameters
    ----------
    group, node_id
        The sensor group and this node's id (``[A-Za-z0-9_.-]{1,64}``).
    zk_hosts, zk_root
        ZooKeeper connection string and the root znode of AeroGuard.
    session_timeout_s
        Requested ZooKeeper session timeout T (the server clamps it to [2, 20] × tickTime).
    source
        Sensor source spec: ``sim[:k=v,...]``, ``csv:PATH[#column]``, ``file:PATH``,
        ``cmd:COMMAND``, ``const:VALUE`` (see `edge.sources`).
    spool_dir, spool_max
        Durable on-disk spool for aggregates no web replica accepted, and its bound.
    api_key
        Sent as ``X-API-Key`` when set: an ingest key valid for `group` (never an admin key).
    zk_auth
        ``user:password``: ZooKeeper digest credentials; every znode the node creates is then
        readable and writable by that user only. None: the tree is open (local demo, tests).
    defaults
        Hot-config defaults (``sampling_period_s``, ``api_urls``, ...) used until ZooKeeper
        holds a config; ZooKeeper's values override them key by key.
    event_log
        Optional JSON-lines file of triggers/readings/deliveries (drills and fault tests).
    """

    group: str
    node_id: str
    zk_hosts: str
    zk_root: str = "/aeroguard"
    session_timeout_s: float = 5.0
    source: str = "sim"
    spool_dir: str = ""
    spool_max: int = 100_000
    api_key: str | None = field(default=None, repr=False)
    zk_auth: str | None = field(default=None, repr=False)
    defaults: Mapping[str, object] = field(default_factory=dict)
    event_log: str | None = None
    hostname: str = field(default_factory=socket.gethostname)

    def __post_init__(self) -> None:
        check_id(self.group, "group")
        check_id(self.node_id, "node_id")
        if not self.zk_hosts:
            raise ValueError("zk_hosts is required (--zk or ZK_HOSTS)")
        if not self.zk_root.startswith("/") or self.zk_root.endswith("/"):
            raise ValueError("zk_root must start with / and not end with /")
        if not 1.0 <= self.session_timeout_s <= 60.0:
            raise ValueError("session_timeout_s must be within [1, 60]")
        if self.spool_max < 1:
            raise ValueError("spool_max must be at least 1")
        if self.zk_auth is not None and not re.fullmatch(r"[^:\s]+:\S+", self.zk_auth):
            raise ValueError("zk_auth must be user:password (ZK_AUTH)")

    @classmethod
    def from_args(cls, argv: Sequence[str] | None = None,
                  environ: Mapping[str, str] | None = None) -> EdgeSettings:
        """Parse `argv` (default ``sys.argv[1:]``) over `environ` (default ``os.environ``)."""
        env = os.environ if environ is None else environ
        args = _parser(env).parse_args(argv)
        defaults: dict[str, object] = {"sampling_period_s": args.period}
        urls = [u.strip() for u in (args.api_urls or "").split(",") if u.strip()]
        if urls:
            defaults["api_urls"] = urls
        spool = args.spool_dir or os.path.join(".run", "spool", f"{args.group}-{args.node_id}")
        return cls(group=args.group, node_id=args.node_id, zk_hosts=args.zk, zk_root=args.zk_root,
                   session_timeout_s=args.session_timeout, source=args.source, spool_dir=spool,
                   spool_max=args.spool_max, api_key=env.get("AEROGUARD_API_KEY") or None,
                   zk_auth=_secret(env, "ZK_AUTH"), defaults=defaults, event_log=args.event_log or None)


def _secret(env: Mapping[str, str], name: str) -> str | None:
    """The value of `name`, or the first line of the file named by ``<name>_FILE``."""
    path = env.get(f"{name}_FILE")
    if path:
        with open(path, encoding="utf-8") as handle:
            return handle.readline().strip() or None
    return env.get(name) or None


def log_level(environ: Mapping[str, str] | None = None) -> str:
    """``LOG_LEVEL`` (default ``INFO``)."""
    return (os.environ if environ is None else environ).get("LOG_LEVEL", "INFO").upper()


def _parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m edge", description="AeroGuard edge node")
    p.add_argument("--group", default=env.get("EDGE_GROUP"), required=not env.get("EDGE_GROUP"))
    p.add_argument("--node-id", default=env.get("EDGE_NODE_ID") or socket.gethostname())
    p.add_argument("--zk", default=env.get("ZK_HOSTS", ""), help="host:port[,host:port...]")
    p.add_argument("--zk-root", default=env.get("ZK_ROOT", "/aeroguard"))
    p.add_argument("--session-timeout", type=float, default=float(env.get("EDGE_SESSION_TIMEOUT_S", 5.0)))
    p.add_argument("--source", default=env.get("EDGE_SOURCE", "sim"))
    p.add_argument("--period", type=float, default=float(env.get("EDGE_PERIOD_S", 1.0)),
                   help="default sampling period until ZooKeeper holds a config")
    p.add_argument("--api-urls", default=env.get("AEROGUARD_API_URLS", ""),
                   help="comma-separated web tier URLs until ZooKeeper holds a config")
    p.add_argument("--spool-dir", default=env.get("EDGE_SPOOL_DIR", ""))
    p.add_argument("--spool-max", type=int, default=int(env.get("EDGE_SPOOL_MAX", 100_000)))
    p.add_argument("--event-log", default=env.get("EDGE_EVENT_LOG", ""))
    return p
