"""Hot configuration: validation rules (shared with the web tier) and live DataWatch updates."""
from __future__ import annotations

import json

import pytest

from edge.hotconfig import ConfigError
from edge.hotconfig import HotConfig
from edge.hotconfig import merge
from edge.hotconfig import parse_document
from harness.process import wait_until
from webapp.cluster import validate_config
from webapp.errors import BadInput

CASES = [
    ({"sampling_period_s": 2}, True),
    ({"sampling_period_s": 0.5, "round_timeout_s": 0.4, "http_timeout_s": 0.3}, True),
    ({"sampling_period_s": 1, "api_urls": ["http://a:8000", "https://b/api/v1/readings"]}, True),
    ({"sampling_period_s": 1, "fusion_k": 5, "fusion_min_spread": 0}, True),
    ({}, True),
    ({"sampling_period_s": 0}, False),
    ({"sampling_period_s": -1}, False),
    ({"sampling_period_s": "1"}, False),
    ({"sampling_period_s": True}, False),
    ({"sampling_period_s": 1e9}, False),
    ({"sampling_period_s": 1, "round_timeout_s": 2}, False),
    ({"sampling_period_s": 1, "http_timeout_s": 1}, False),
    ({"sampling_period_s": 1, "api_urls": "http://a"}, False),
    ({"sampling_period_s": 1, "api_urls": ["ftp://a"]}, False),
    ({"sampling_period_s": 1, "fusion_k": 0}, False),
    ({"sampling_period_s": 1, "fusion_min_spread": -0.1}, False),
    ({"sampling_period_s": 1, "period": 1}, False),
    (["sampling_period_s"], False),
    ({"sampling_period_s": 0.1}, True),
    ({"sampling_period_s": 0.001}, False),
    ({"round_timeout_s": 5}, False),
    ({"round_timeout_s": 0.9, "http_timeout_s": 0.5}, True),
    ({"http_timeout_s": 1}, False),
    ({"api_urls": ["http://user:secret@web:8000"]}, False),
    ({"api_urls": ["http://:8000"]}, False),
    ({"api_urls": ["http://web:99999"]}, False),
    ({"fusion_k": 10**400}, False),
]


@pytest.mark.parametrize("doc, valid", CASES)
def test_edge_and_web_tier_validate_alike(doc, valid):
    try:
        merge({"sampling_period_s": 1.0}, parse_document(json.dumps(doc)))
        edge_ok = True
    except ConfigError:
        edge_ok = False
    try:
        validate_config(doc)
        web_ok = True
    except BadInput:
        web_ok = False
    assert (edge_ok, web_ok) == (valid, valid)


@pytest.mark.parametrize("raw", [b"{not json", b"[1]", b'"x"', b"\xff"])
def test_malformed_documents_raise(raw):
    with pytest.raises(ConfigError):
        parse_document(raw)


def test_a_period_of_one_millisecond_is_refused():
    with pytest.raises(ConfigError, match=r"sampling_period_s must be a number in \[0.1, 3600\]"):
        parse_document(b'{"sampling_period_s": 0.001}')


def test_derived_timeouts_follow_the_period():
    config = merge({"sampling_period_s": 10.0})
    assert (config.round_timeout, config.http_timeout) == (8.0, 4.0)


def _set(zk, path, data: bytes):
    if zk.exists(path):
        zk.set(path, data)
    else:
        zk.create(path, data, makepath=True)


def test_live_updates_keep_the_last_good_config(zk):
    changes = []
    hot = HotConfig(zk, "/aeroguard", "g1", {"sampling_period_s": 1.0}, changes.append)
    hot.start()
    _set(zk, "/aeroguard/config", b'{"sampling_period_s": 0.5}')
    wait_until(lambda: hot.current.sampling_period_s == 0.5, 2, "valid config applied")
    for bad in (b"{oops", b'{"sampling_period_s": 0}', b'{"sampling_period_s": -3}', b'{"colour": "red"}'):
        errors = hot.errors
        _set(zk, "/aeroguard/config", bad)
        wait_until(lambda: hot.errors > errors, 2, f"rejection of {bad!r}")
        assert hot.current.sampling_period_s == 0.5
    _set(zk, "/aeroguard/groups/g1/config", b'{"fusion_k": 6}')
    wait_until(lambda: hot.current.fusion_k == 6.0, 2, "group override applied")
    assert hot.current.sampling_period_s == 0.5
    assert all(c.sampling_period_s > 0 for c in changes)


def test_a_burst_of_sets_ends_on_the_last_value(zk):
    hot = HotConfig(zk, "/aeroguard", "g1", {"sampling_period_s": 1.0})
    hot.start()
    for i in range(200):
        _set(zk, "/aeroguard/config", json.dumps({"sampling_period_s": 1.0 + (i + 1) / 100}).encode())
    wait_until(lambda: hot.current.sampling_period_s == 3.0, 5, "last of 200 values applied")
    assert hot.errors == 0
