"""One way to answer: JSON by default, HTML for browsers, ``served_by`` in every answer."""
from __future__ import annotations

from flask import current_app
from flask import jsonify
from flask import render_template
from flask import request


def wants_html() -> bool:
    """Whether the client prefers HTML to JSON (a browser does; curl's ``*/*`` does not)."""
    if "html" not in request.headers.get("Accept", ""):
        return False  # the common API case, without parsing the header
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html" and request.accept_mimetypes[best] > request.accept_mimetypes["application/json"]


def respond(body: dict, status: int = 200, template: str | None = None):
    """`body` plus ``served_by``, as JSON or rendered with `template` (or the generic page)."""
    body = {**body, "served_by": current_app.extensions["settings"].web.hostname}
    if wants_html():
        return render_template(template or "generic.html", body=body, status=status), status
    return jsonify(body), status
