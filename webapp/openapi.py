"""The OpenAPI 3.1 description of the HTTP API, served at ``/openapi.json``.

Written by hand next to the routes it describes; ``tests/test_openapi.py`` checks that it
names exactly the routes the app serves, and runs schema-driven requests against the app.
"""
from __future__ import annotations

import time

from flask import Blueprint
from flask import current_app
from flask import jsonify

from contracts import aggregate as contract
from webapp.config import SENSOR_PATTERN

bp = Blueprint("openapi", __name__)

_SENSOR = {"name": "sensor", "in": "query", "required": False,
           "schema": {"type": "string", "pattern": f"^{SENSOR_PATTERN}$"}}
_DATO = {"name": "dato", "in": "query", "required": True, "description": "a finite decimal number",
         "schema": {"type": "string", "pattern": r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,4})?$"}}
_COUNT = {"name": "count", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1}}
_MS = {"type": "integer", "minimum": 0, "description": "milliseconds since the Unix epoch"}
# The aggregate's bounds come from the contract the edge and the web tier load (contracts/).
_VALUE = {"type": "number", "minimum": -contract.MAX_ABS_VALUE, "maximum": contract.MAX_ABS_VALUE}
_ERROR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_JSON = {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}}


_KEY = [{"apiKey": []}]


def _answers(ok: int, *errors: int) -> dict:
    return {str(ok): _JSON, **{str(code): _ERROR for code in errors}}


SPEC = {
    "openapi": "3.1.0",
    "info": {"title": "AeroGuard", "version": "1.0.0",
             "description": "Readings, verdicts of the M-of-N detector vote, and the edge cluster."},
    "paths": {
        "/nuevo": {"get": {"summary": "Store one reading", "parameters": [_DATO, _SENSOR], "security": _KEY,
                           "responses": _answers(201, 400, 401, 403, 503)}},
        "/listar": {"get": {"summary": "Readings in time order",
                            "parameters": [_SENSOR, _COUNT,
                                           {"name": "from", "in": "query", "schema": _MS},
                                           {"name": "to", "in": "query", "schema": _MS}],
                            "responses": _answers(200, 400, 503)}},
        "/detectar": {"get": {"summary": "Store a reading and judge its window", "parameters": [_DATO, _SENSOR],
                              "security": _KEY,
                              "responses": _answers(201, 400, 401, 403, 503)}},
        "/api/v1/readings": {"post": {
            "summary": "Edge aggregates (one or a list); idempotent by group:epoch:round", "security": _KEY,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "oneOf": [{"$ref": "#/components/schemas/Aggregate"},
                          {"type": "array", "minItems": 1, "maxItems": 100,
                           "items": {"$ref": "#/components/schemas/Aggregate"}}]}}}},
            "responses": _answers(201, 200, 400, 401, 403, 409, 503)}},
        "/api/v1/anomalies": {"get": {"summary": "The decision log, newest first",
                                      "parameters": [_SENSOR, _COUNT,
                                                     {"name": "kind", "in": "query",
                                                      "schema": {"enum": ["decision", "sensor_fault"]}}],
                                      "responses": _answers(200, 400, 503)}},
        "/api/v1/incidents": {"get": {"summary": "Incidents, newest first: start, end, peak, detectors",
                                      "parameters": [_SENSOR, _COUNT], "responses": _answers(200, 400, 503)}},
        "/api/v1/cluster": {"get": {"summary": "Edge groups, leaders, epochs, nodes, config",
                                    "responses": _answers(200, 503)}},
        "/api/v1/config": {"put": {"summary": "Change the cluster configuration (hot), or one group's",
                                   "security": _KEY,
                                   "parameters": [{"name": "group", "in": "query", "required": False,
                                                   "schema": {"type": "string", "pattern": f"^{SENSOR_PATTERN}$"}}],
                                   "requestBody": {"required": True,
                                                   "content": {"application/json": {"schema": {"type": "object"}}}},
                                   "responses": _answers(200, 400, 401, 403, 503)}},
        "/": {"get": {"summary": "The built-in dashboard (HTML)",
                      "responses": {"200": {"description": "page",
                                            "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        "/api/v1/sensors": {"get": {
            "summary": "Sensors in id order with their newest reading and verdict, a page at a time",
            "description": "At most `count` sensors (default 100, at most 1000) whose id sorts after `after`; "
                           "`next_after` is in the answer when more follow: pass it as `after` for the next page.",
            "parameters": [{"name": "count", "in": "query", "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                           {"name": "after", "in": "query", "required": False,
                            "schema": {"type": "string", "pattern": f"^{SENSOR_PATTERN}$"}}],
            "responses": _answers(200, 400, 503)}},
        "/api/v1/sensors/{sensor}": {"get": {
            "summary": "A sensor's newest readings with verdicts, and each detector's latest ballot",
            "parameters": [{**_SENSOR, "in": "path", "required": True}, _COUNT],
            "responses": _answers(200, 400, 503)}},
        "/healthz": {"get": {"summary": "Liveness", "responses": _answers(200)}},
        "/readyz": {"get": {"summary": "Readiness and each dependency's state", "responses": _answers(200, 503)}},
        "/metrics": {"get": {"summary": "Prometheus exposition",
                             "responses": {"200": {"description": "text exposition",
                                                   "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"summary": "This document", "responses": _answers(200)}},
    },
    "components": {
        "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            "Aggregate": {
                "type": "object", "additionalProperties": False,
                "required": ["group", "epoch", "round", "timestamp", "value"],
                "properties": {
                    "group": {"type": "string", "pattern": f"^{SENSOR_PATTERN}$"},
                    "epoch": {"type": "integer", "minimum": 0},
                    "round": {"type": "integer", "minimum": 0},
                    "timestamp": _MS,
                    "value": _VALUE,
                    "readings": {"type": "array", "maxItems": contract.MAX_NODES, "items": {
                        "type": "object", "required": ["node_id", "value"], "additionalProperties": False,
                        "properties": {"node_id": {"type": "string", "pattern": f"^{SENSOR_PATTERN}$"},
                                       "value": _VALUE, "measured_at": _MS}}},
                    "excluded": {"type": "array", "maxItems": contract.MAX_NODES, "items": {
                        "type": "object", "required": ["node_id", "value"], "additionalProperties": False,
                        "properties": {"node_id": {"type": "string", "pattern": f"^{SENSOR_PATTERN}$"},
                                       "value": _VALUE,
                                       "reason": {"type": "string", "maxLength": contract.MAX_REASON_CHARS}}}},
                },
            },
        },
    },
}


@bp.get("/openapi.json")
def openapi():
    """The document, with the window an aggregate's timestamp must fall in as of now: no older
    than the retention, at most the stated clock skew ahead (400 otherwise)."""
    settings = current_app.extensions["settings"]
    now = time.time_ns() // 1_000_000
    # The lower bound moves on with the clock: stated 10 minutes inside it, so a client that
    # generates from this document a while after reading it still sends acceptable timestamps.
    timestamp = {**_MS, "minimum": now - int(settings.retention.retention_days * 86_400_000) + 600_000,
                 "maximum": now + int(settings.limits.max_future_skew_s * 1000),
                 "description": "milliseconds since the Unix epoch; within RETENTION_DAYS before and "
                                "MAX_FUTURE_SKEW_S after the server's clock (bounds as of this document)"}
    aggregate = SPEC["components"]["schemas"]["Aggregate"]
    schemas = {**SPEC["components"]["schemas"],
               "Aggregate": {**aggregate, "properties": {**aggregate["properties"], "timestamp": timestamp}}}
    return jsonify({**SPEC, "components": {**SPEC["components"], "schemas": schemas}})
