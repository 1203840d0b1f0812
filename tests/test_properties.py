"""Property-based requests over every endpoint: never a 5xx, and a rejected request stores nothing."""
from __future__ import annotations

import json

from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from conftest import snapshot

ENDPOINTS = ["/nuevo", "/detectar", "/listar", "/api/v1/anomalies", "/api/v1/sensors", "/readyz", "/healthz"]
PARAMS = ["dato", "sensor", "count", "from", "to", "kind"]
text = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"[+-]?[0-9]{0,6}(\.[0-9]{0,4})?([eE][+-]?[0-9]{1,5})?", fullmatch=True),
    st.sampled_from(["nan", "inf", "-inf", "1e999", "0x1f", "1_0", "", " ", "null", "../x", "a" * 70, "*", "s1"]),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
aggregate_like = st.fixed_dictionaries(
    {"group": st.one_of(st.just("g1"), st.text(max_size=10)),
     "epoch": st.one_of(st.integers(-2, 5), json_values),
     "round": st.one_of(st.integers(-2, 50), json_values),
     "timestamp": st.one_of(st.integers(-1, 2**63), json_values),
     "value": st.one_of(st.floats(), json_values)},
    optional={"readings": json_values, "excluded": json_values, "extra": json_values},
)
FAST = hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(path=st.sampled_from(ENDPOINTS), params=st.dictionaries(st.sampled_from(PARAMS), text, max_size=4))
def test_queries_never_5xx_and_rejections_store_nothing(client, redis_client, redis_prefix, path, params):
    before = snapshot(redis_client, redis_prefix)
    answer = client.get(path, query_string=params)
    assert answer.status_code < 500, (path, params, answer.json)
    if answer.status_code >= 400:
        assert answer.json["error"]
        assert snapshot(redis_client, redis_prefix) == before


@FAST
@given(body=st.one_of(aggregate_like, json_values, st.lists(aggregate_like, max_size=3)))
def test_ingest_bodies_never_5xx_and_rejections_store_nothing(client, redis_client, redis_prefix, body):
    before = snapshot(redis_client, redis_prefix)
    payload = json.dumps(body, allow_nan=True)
    answer = client.post("/api/v1/readings", data=payload, content_type="application/json")
    assert answer.status_code < 500, (body, answer.json)
    if answer.status_code == 400:
        assert snapshot(redis_client, redis_prefix) == before
    if answer.status_code in (200, 201):
        stored = [key for key in snapshot(redis_client, redis_prefix) if key.endswith(":readings")]
        assert stored, "an accepted aggregate is stored"


@FAST
@given(raw=st.binary(max_size=300))
def test_raw_bytes_never_5xx(client, redis_client, redis_prefix, raw):
    before = snapshot(redis_client, redis_prefix)
    answer = client.post("/api/v1/readings", data=raw, content_type="application/json")
    assert answer.status_code < 500
    if answer.status_code == 400:
        assert snapshot(redis_client, redis_prefix) == before
