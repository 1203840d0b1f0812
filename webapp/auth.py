"""API keys: ingest keys scoped to groups, admin keys apart; compared in constant time, never logged.

Ingest keys (``API_KEYS``) let edge leaders post aggregates and sensors call ``/nuevo`` and
``/detectar``: a key is valid for every group (``KEY`` or ``* KEY``) or for one group or
sensor id (``GROUP KEY``). Admin keys (``ADMIN_KEYS``) alone may ``PUT /api/v1/config``; an
ingest key there is refused, as an admin key is on ingest.
"""
from __future__ import annotations

import hmac
from collections.abc import Iterable

from flask import request

from webapp.config import Settings
from webapp.errors import Forbidden
from webapp.errors import Unauthorized

EVERY_GROUP = "*"


def check_ingest_key(settings: Settings, groups: Iterable[str] = ()) -> None:
    """Raise `Unauthorized` (no ``X-API-Key``) or `Forbidden` unless the key may ingest for `groups`.

    With no `groups` (before the body is parsed) the key must be valid for at least one group.
    With no ingest key configured the check passes: the local demo runs ingest open, and
    `Settings.check_secrets` refuses that in production.
    """
    if settings.auth.ingest_open:
        return
    scopes = _matching(_given(), [(EVERY_GROUP, key) for key in settings.auth.api_keys]
                       + [(group, key) for group, keys in settings.auth.group_keys.items() for key in keys])
    if not scopes or (EVERY_GROUP not in scopes and not set(groups) <= scopes):
        raise Forbidden("API key not accepted")


def check_admin_key(settings: Settings) -> None:
    """Raise `Unauthorized` (no ``X-API-Key``) or `Forbidden` unless the key is an admin key.

    With no admin key configured every request is refused: changing the system is never open.
    """
    if not _matching(_given(), [("admin", key) for key in settings.auth.admin_keys]):
        raise Forbidden("API key not accepted")


def _given() -> bytes:
    given = request.headers.get("X-API-Key")
    if not given:
        raise Unauthorized("X-API-Key header required")
    return given.encode()


def _matching(given: bytes, scoped_keys: list[tuple[str, str]]) -> set[str]:
    """The scopes whose key equals `given`; every key is compared, each in constant time."""
    matches = [(scope, hmac.compare_digest(given, key.encode())) for scope, key in scoped_keys]
    return {scope for scope, match in matches if match}
