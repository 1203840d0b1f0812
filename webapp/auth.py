"""API keys: checked in constant time against every configured key, never logged."""
from __future__ import annotations

import hmac

from flask import request

from webapp.config import Settings
from webapp.errors import Forbidden
from webapp.errors import Unauthorized


def check_api_key(settings: Settings, required: bool) -> None:
    """Raise `Unauthorized` (no ``X-API-Key``) or `Forbidden` (not a configured key).

    With `required` false the check applies only when keys are configured, which is how the
    local demo runs the ingest endpoints open. With `required` true and no keys configured,
    every request is refused: an endpoint that changes the system is never open by default.
    """
    if not required and not settings.api_keys:
        return
    given = request.headers.get("X-API-Key")
    if not given:
        raise Unauthorized("X-API-Key header required")
    matches = [hmac.compare_digest(given.encode(), key.encode()) for key in settings.api_keys]
    if not any(matches):
        raise Forbidden("API key not accepted")
