"""The edge cluster seen from the web tier: ``GET /api/v1/cluster`` and ``PUT /api/v1/config``."""
from __future__ import annotations

from flask import Blueprint
from flask import current_app

from webapp.errors import DependencyUnavailable

bp = Blueprint("cluster", __name__)


@bp.get("/api/v1/cluster")
def cluster():
    if current_app.extensions.get("zk") is None:
        raise DependencyUnavailable("ZooKeeper is not configured (ZK_HOSTS)")
    raise DependencyUnavailable("cluster view not available yet")
