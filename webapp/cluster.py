"""The edge cluster seen from the web tier: ``GET /api/v1/cluster`` and ``PUT /api/v1/config``.

Reads ZooKeeper's AeroGuard tree (docs/edge.md, "ZooKeeper layout") with the app's kazoo
client (``app.extensions["zk"]``; None when ``ZK_HOSTS`` is unset, answered 503), and writes
the hot configuration the edge nodes watch. The config rules are the contract the edge loads
too (``contracts/config.py``; the web tier never imports the edge): a write is refused unless
its merge with the documents already in ZooKeeper is a config every node will apply.
Nothing here creates znodes on a read.
"""
from __future__ import annotations

import json
from collections.abc import Iterable

from flask import Blueprint
from flask import current_app
from flask import request
from kazoo.exceptions import KazooException
from kazoo.exceptions import NoNodeError
from kazoo.recipe.election import Election
from kazoo.recipe.queue import LockingQueue

from contracts import ContractError
from contracts import config as contract
from contracts.zk_layout import GroupZnodes
from contracts.zk_layout import ZkLayout
from webapp.auth import check_admin_key
from webapp.errors import BadInput
from webapp.errors import DependencyUnavailable
from webapp.responses import respond
from webapp.validation import sensor_id

bp = Blueprint("cluster", __name__)

# A write re-reads and retries when another write changed a document it was judged with.
WRITE_ATTEMPTS = 3


def validate_config(doc: object, hosts: Iterable[str] | None = None) -> dict:
    """Check one config document by the contract, alone and merged over the defaults.

    `hosts` is the allow-list of ``api_urls`` hosts (``CONFIG_URL_HOSTS``; None: any host).
    Raises `BadInput` naming the key.

    >>> validate_config({"sampling_period_s": 2, "api_urls": ["http://web:8000"]})
    {'sampling_period_s': 2, 'api_urls': ['http://web:8000']}
    >>> validate_config({"round_timeout_s": 5})
    Traceback (most recent call last):
    webapp.errors.BadInput: round_timeout_s must not exceed sampling_period_s (5 > 1)
    """
    try:
        contract.merge(contract.check_document(doc, hosts))
    except ContractError as exc:
        raise BadInput(str(exc)) from None
    return doc


def _document(zk, path: str) -> tuple[dict, int | None]:
    """The checked values of the config document at `path` and its version (None: absent).

    A document the contract refuses counts as empty, as on a node that started after it.
    """
    try:
        data, stat = zk.get(path)
    except NoNodeError:
        return {}, None
    try:
        return contract.check_document(json.loads(data) if data else {}), stat.version
    except (ValueError, ContractError):
        return {}, stat.version


def _documents(zk, layout: ZkLayout, group: str | None) -> dict[str, tuple[dict, int | None]]:
    """The documents a write to the cluster config (`group` None) or a group's is merged with."""
    groups = [group] if group is not None else _children(zk, layout.groups)
    paths = [layout.config, *(layout.group(name).config for name in groups)]
    return {path: _document(zk, path) for path in paths}


def _check_merges(doc: dict, path: str, cluster: str, seen: dict[str, tuple[dict, int | None]]) -> None:
    """`BadInput` unless `doc` at `path` merges into a valid config for every group it reaches
    (`cluster`: the cluster config's path)."""
    merges = ([(other, (doc, values)) for other, (values, _) in seen.items() if other != cluster]
              if path == cluster else [(cluster, (seen[cluster][0], doc))])
    for other, layers in merges:
        try:
            contract.merge(*layers)
        except ContractError as exc:
            raise BadInput(f"{exc} (merged with {other})") from None


def _commit(zk, path: str, data: bytes, seen: dict[str, tuple[dict, int | None]]) -> int | None:
    """Write `data` at `path` if no document in `seen` changed since it was read; its new version.

    None when one changed (or appeared) meanwhile: judge again.
    """
    transaction = zk.transaction()
    for other, (_, version) in seen.items():
        if other != path and version is not None:
            transaction.check(other, version)
    version = seen[path][1]
    if version is None:
        zk.ensure_path(path.rsplit("/", 1)[0])
        transaction.create(path, data)
    else:
        transaction.set_data(path, data, version=version)
    results = transaction.commit()
    if any(isinstance(result, Exception) for result in results):
        return None
    return 0 if version is None else results[-1].version


def _zk():
    zk = current_app.extensions.get("zk")
    if zk is None:
        raise DependencyUnavailable("ZooKeeper is not configured (ZK_HOSTS)")
    if not zk.connected:
        raise DependencyUnavailable("ZooKeeper is not reachable")
    return zk


def _json(zk, path: str) -> object:
    """The JSON content of `path`, None if missing or empty, ``{"invalid": raw}`` if not JSON."""
    try:
        data, _ = zk.get(path)
    except NoNodeError:
        return None
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return {"invalid": data.decode("utf-8", "replace")[:200]}


def _children(zk, path: str) -> list[str]:
    try:
        return sorted(zk.get_children(path))
    except NoNodeError:
        return []


def _leader(zk, election: str) -> str | None:
    """The identifier of the lowest-sequence contender, by kazoo's `Election.contenders()`.

    The recipe creates the election znode when it is missing, so a group no node has joined
    yet (only its config exists) is answered without it: a read creates nothing.
    """
    if zk.exists(election) is None:
        return None
    contenders = Election(zk, election).contenders()
    return contenders[0] if contenders else None


def _group(zk, znodes: GroupZnodes) -> dict:
    nodes = []
    for node_id in _children(zk, znodes.nodes):
        info = _json(zk, znodes.node(node_id))
        if info is not None:
            nodes.append(info if isinstance(info, dict) else {"node_id": node_id})
    epoch = _json(zk, znodes.epoch)
    trigger = _json(zk, znodes.trigger) or {}
    return {"leader": _leader(zk, znodes.election),
            "epoch": epoch.get("epoch") if isinstance(epoch, dict) else epoch,
            "term": epoch, "last_round": trigger.get("round"), "last_trigger": trigger,
            "live_nodes": nodes, "queue_depth": len(_children(zk, znodes.queue + LockingQueue.entries)),
            "config": _json(zk, znodes.config)}


@bp.get("/api/v1/cluster")
def cluster():
    """Groups with leader, epoch, last round, live nodes (with pids) and the config."""
    zk, root = _zk(), current_app.extensions["settings"].cluster.zk_root
    layout = ZkLayout(root)
    try:
        groups = {name: _group(zk, layout.group(name)) for name in _children(zk, layout.groups)}
        config = _json(zk, layout.config)
    except KazooException as exc:
        raise DependencyUnavailable(f"ZooKeeper read failed: {exc.__class__.__name__}") from exc
    return respond({"root": root, "config": config, "groups": groups})


@bp.put("/api/v1/config")
def put_config():
    """Replace the cluster config (or one group's with ``?group=G``); needs ``X-API-Key``."""
    settings = current_app.extensions["settings"]
    check_admin_key(settings)
    body = request.get_json(silent=True)
    if body is None:
        raise BadInput("body must be a JSON object (Content-Type: application/json)")
    doc = validate_config(body, settings.cluster.config_url_hosts or None)
    group = request.args.get("group")
    layout = ZkLayout(settings.cluster.zk_root)
    path = layout.config if group is None else layout.group(sensor_id(group, "group")).config
    zk = _zk()
    data = json.dumps(doc).encode()
    try:
        for _ in range(WRITE_ATTEMPTS):
            seen = _documents(zk, layout, group)
            _check_merges(contract.check_document(doc), path, layout.config, seen)
            version = _commit(zk, path, data, seen)
            if version is not None:
                return respond({"path": path, "config": doc, "version": version}, 200)
    except KazooException as exc:
        raise DependencyUnavailable(f"ZooKeeper write failed: {exc.__class__.__name__}") from exc
    raise DependencyUnavailable("the config changed during the write; retry")
