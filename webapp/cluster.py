"""The edge cluster seen from the web tier: ``GET /api/v1/cluster`` and ``PUT /api/v1/config``.

Reads ZooKeeper's AeroGuard tree (ARCHITECTURE.md, "ZooKeeper layout") with the app's kazoo
client (``app.extensions["zk"]``; None when ``ZK_HOSTS`` is unset, answered 503), and writes
the hot configuration the edge nodes watch. The config rules are a copy of the edge's
(``edge/hotconfig.py``: the web tier never imports the edge); ``tests/test_cluster_api.py``
checks both copies on one table of cases. Nothing here creates znodes on a read.
"""
from __future__ import annotations

import json
import math
from urllib.parse import urlparse

from flask import Blueprint
from flask import current_app
from flask import request
from kazoo.exceptions import KazooException
from kazoo.exceptions import NodeExistsError
from kazoo.exceptions import NoNodeError

from webapp.auth import check_api_key
from webapp.errors import BadInput
from webapp.errors import DependencyUnavailable
from webapp.responses import respond
from webapp.validation import sensor_id

bp = Blueprint("cluster", __name__)

MAX_URLS = 16
_LIMITS = {"sampling_period_s": (0.0, 3600.0), "round_timeout_s": (0.0, 3600.0),
           "fusion_k": (0.0, 100.0), "http_timeout_s": (0.0, 60.0)}


def validate_config(doc: object) -> dict:
    """Check one config document by the edge's rules; raise `BadInput` naming the key.

    >>> validate_config({"sampling_period_s": 2, "api_urls": ["http://web:8000"]})
    {'sampling_period_s': 2, 'api_urls': ['http://web:8000']}
    """
    if not isinstance(doc, dict):
        raise BadInput("config must be a JSON object")
    unknown = sorted(set(doc) - set(_LIMITS) - {"api_urls", "fusion_min_spread"})
    if unknown:
        raise BadInput(f"unknown config key(s): {', '.join(unknown)}")
    for key, (low, high) in _LIMITS.items():
        if key in doc and not (_number(doc[key]) and low < doc[key] <= high):
            raise BadInput(f"{key} must be a number in ({low:g}, {high:g}]")
    if "fusion_min_spread" in doc and not (_number(doc["fusion_min_spread"]) and doc["fusion_min_spread"] >= 0):
        raise BadInput("fusion_min_spread must be a finite number >= 0")
    if "api_urls" in doc:
        _check_urls(doc["api_urls"])
    period = doc.get("sampling_period_s")
    if period is not None and doc.get("round_timeout_s", 0) > period:
        raise BadInput("round_timeout_s must not exceed sampling_period_s")
    if period is not None and doc.get("http_timeout_s", 0) >= period:
        raise BadInput("http_timeout_s must be below sampling_period_s")
    return doc


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_urls(urls: object) -> None:
    if not isinstance(urls, list) or len(urls) > MAX_URLS:
        raise BadInput(f"api_urls must be a list of at most {MAX_URLS} URLs")
    for url in urls:
        parsed = urlparse(url) if isinstance(url, str) else None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise BadInput(f"api_urls: {url!r} is not an http(s) URL")


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
    """The identifier of the lowest-sequence contender (kazoo's Election leader)."""
    contenders = sorted(_children(zk, election), key=lambda name: name[-10:])
    for name in contenders:
        try:
            data, _ = zk.get(f"{election}/{name}")
            return data.decode("utf-8")
        except NoNodeError:
            continue
    return None


def _group(zk, base: str) -> dict:
    nodes = []
    for node_id in _children(zk, f"{base}/nodes"):
        info = _json(zk, f"{base}/nodes/{node_id}")
        if info is not None:
            nodes.append(info if isinstance(info, dict) else {"node_id": node_id})
    epoch = _json(zk, f"{base}/epoch")
    trigger = _json(zk, f"{base}/sequence_trigger") or {}
    return {"leader": _leader(zk, f"{base}/election"),
            "epoch": epoch.get("epoch") if isinstance(epoch, dict) else epoch,
            "term": epoch, "last_round": trigger.get("round"), "last_trigger": trigger,
            "live_nodes": nodes, "queue_depth": len(_children(zk, f"{base}/queue/entries")),
            "config": _json(zk, f"{base}/config")}


@bp.get("/api/v1/cluster")
def cluster():
    """Groups with leader, epoch, last round, live nodes (with pids) and the config."""
    zk, root = _zk(), current_app.extensions["settings"].zk_root
    try:
        groups = {name: _group(zk, f"{root}/groups/{name}") for name in _children(zk, f"{root}/groups")}
        config = _json(zk, f"{root}/config")
    except KazooException as exc:
        raise DependencyUnavailable(f"ZooKeeper read failed: {exc.__class__.__name__}") from exc
    return respond({"root": root, "config": config, "groups": groups})


@bp.put("/api/v1/config")
def put_config():
    """Replace the cluster config (or one group's with ``?group=G``); needs ``X-API-Key``."""
    settings = current_app.extensions["settings"]
    check_api_key(settings, required=True)
    body = request.get_json(silent=True)
    if body is None:
        raise BadInput("body must be a JSON object (Content-Type: application/json)")
    doc = validate_config(body)
    group = request.args.get("group")
    path = f"{settings.zk_root}/config"
    if group is not None:
        path = f"{settings.zk_root}/groups/{sensor_id(group, 'group')}/config"
    zk = _zk()
    data = json.dumps(doc).encode()
    try:
        try:
            zk.create(path, data, makepath=True)
        except NodeExistsError:
            zk.set(path, data)
        _, stat = zk.get(path)
    except KazooException as exc:
        raise DependencyUnavailable(f"ZooKeeper write failed: {exc.__class__.__name__}") from exc
    return respond({"path": path, "config": doc, "version": stat.version}, 200)
