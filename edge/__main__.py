"""``python -m edge --group G --node-id N --zk HOSTS [...]``: run one edge node until SIGTERM.

Builds the one `KazooClient` of the process with the settings of docs/edge.md, "Kazoo settings"
(short reconnect backoff, bounded command retry, an explicit session timeout), the sensor
source and the `EdgeNode`; SIGTERM or SIGINT call `EdgeNode.stop`, which ends with
``zk.stop()`` so the group fails over in milliseconds during a planned restart.
"""
from __future__ import annotations

import logging
import signal
import sys
import threading

from kazoo.client import KazooClient
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.retry import KazooRetry
from kazoo.security import make_digest_acl

from edge.config import EdgeSettings
from edge.config import log_level
from edge.events import EventLog
from edge.node import EdgeNode
from edge.sources import build_source

log = logging.getLogger("edge")

CONNECT_TIMEOUT_S = 30.0


def make_client(settings: EdgeSettings) -> KazooClient:
    """The process's ZooKeeper client: reconnect backoff capped at 1 s, bounded command retry.

    With `settings.zk_auth` it authenticates by digest (again on every reconnect) and creates
    each znode (recipes' locks, queue entries and ephemerals included) with full rights for
    that user and none for anyone else.
    """
    acl = {}
    if settings.zk_auth:
        user, _, password = settings.zk_auth.partition(":")
        acl = dict(auth_data=[("digest", settings.zk_auth)], default_acl=[make_digest_acl(user, password, all=True)])
    return KazooClient(
        hosts=settings.zk_hosts,
        timeout=settings.session_timeout_s,
        connection_retry=KazooRetry(max_tries=-1, delay=0.05, backoff=2, max_delay=1.0),
        command_retry=KazooRetry(max_tries=4, delay=0.05, backoff=2, max_delay=1.0),
        **acl,
    )


def main(argv: list[str] | None = None) -> int:
    settings = EdgeSettings.from_args(argv)
    logging.basicConfig(level=log_level(), stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s [" + settings.node_id + "] %(message)s")
    source = build_source(settings.source, settings.node_id)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    zk = make_client(settings)
    try:
        zk.start(timeout=CONNECT_TIMEOUT_S)
    except KazooTimeoutError:
        log.error("no ZooKeeper server of %s answered within %.0f s", settings.zk_hosts, CONNECT_TIMEOUT_S)
        zk.stop()
        zk.close()
        return 2
    log.info("connected to ZooKeeper %s (session timeout requested %.1f s; the server clamps it to "
             "[2, 20] x tickTime)", settings.zk_hosts, settings.session_timeout_s)
    if not settings.zk_auth:
        log.warning("no ZK_AUTH: the znodes this node creates are open to any ZooKeeper client")
    node = EdgeNode(zk, settings, source, EventLog(settings.event_log, settings.node_id))
    node.start()
    while not stopping.is_set() and not node.crashed.is_set():
        stopping.wait(0.5)
    node.stop()
    return 1 if node.crashed.is_set() else 0


if __name__ == "__main__":
    sys.exit(main())
