"""The built-in dashboard at ``/`` and the two read-only endpoints it polls.

The page is static HTML, CSS and JavaScript served by the web tier itself (no CDN), so it
works wherever the API does. Each panel fetches its own data and says so when that data's
dependency is down, instead of the whole page failing.
"""
from __future__ import annotations

from flask import Blueprint
from flask import current_app
from flask import render_template
from flask import request

from webapp.responses import respond
from webapp.validation import parse_int
from webapp.validation import sensor_id

bp = Blueprint("dashboard", __name__)


@bp.get("/")
def index():
    settings = current_app.extensions["settings"]
    return render_template("dashboard.html", served_by=settings.web.hostname,
                           default_sensor=settings.detection.default_sensor)


@bp.get("/api/v1/sensors")
def sensors():
    """Sensors in id order with their newest reading and verdict, a page at a time:
    ``?count=`` (default 100, at most 1000) after ``?after=<sensor id>``; ``next_after`` names
    the page's last sensor when more follow."""
    count = parse_int(request.args.get("count"), "count", 100, 1, 1000)
    after = request.args.get("after")
    found, more = current_app.extensions["store"].sensors(count, sensor_id(after, "after") if after is not None else "")
    body = {"count": len(found), "sensors": found}
    if more:
        body["next_after"] = found[-1]["sensor"]
    return respond(body)


@bp.get("/api/v1/sensors/<sensor>")
def sensor_detail(sensor: str):
    """A sensor's newest readings with their verdicts, and each detector's latest ballot."""
    sensor = sensor_id(sensor)
    count = parse_int(request.args.get("count"), "count", 300, 1, 5000)
    store = current_app.extensions["store"]
    recent = store.recent(sensor, count)
    return respond({"sensor": sensor, "count": len(recent), "recent": recent,
                    "ballots": store.latest_ballots(sensor)})
