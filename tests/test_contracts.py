"""The edge and the web tier judge every aggregate and every config document alike.

Hypothesis builds documents around the contract's edges (±1e9 and just beyond, 2e9, NaN,
infinities, bools and floats where integers belong, huge integers, 200/201-character
reasons, 64/65 entries, bad ids and URLs, unknown and missing keys) and both validators must
accept or refuse each one together. Neither side imports the other here beyond its public
validator; both load ``contracts/``.
"""
from __future__ import annotations

import ast
import copy
import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import example
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from contracts import aggregate as aggregate_contract
from contracts.zk_layout import ZkLayout
from edge.hotconfig import ConfigError
from edge.hotconfig import merge
from edge.hotconfig import parse_document
from edge.schema import SchemaError
from edge.schema import validate_aggregate
from webapp.cluster import validate_config
from webapp.config import Settings
from webapp.errors import BadInput
from webapp.validation import parse_aggregate

ROOT = Path(__file__).resolve().parents[1]
NOW = 1_763_770_000_123
SKEW = aggregate_contract.MAX_FUTURE_SKEW_MS
MANY = hsettings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])

odd = st.sampled_from([None, True, False, "1", "", [], {}, float("nan"), float("inf"), -float("inf"), 10**400])
# Values on both sides of each limit: a valid document with one or two of these swapped in.
numbers = st.one_of(
    st.sampled_from([0, -0.0, 1e9, -1e9, 1e9 + 1, math.nextafter(1e9, math.inf), 2e9, -2e9, 1e308, 2**62 + 1]),
    st.floats(-1.1e9, 1.1e9), st.integers(-(2**64), 2**64), odd)
integers = st.one_of(st.sampled_from([0, 2**62, 2**62 + 1, -1, 1.0, 1.5, True, NOW + SKEW, NOW + SKEW + 1]),
                     st.integers(-10, 2**63), odd)
good_ids = st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True)
ids = st.one_of(st.sampled_from(["a" * 64, "a" * 65, "", "n 1", "n/1", "é"]), good_ids, odd)
reasons = st.one_of(st.integers(0, 230).map(lambda n: "r" * n), st.text(max_size=5), odd)
BAD = {"group": ids, "node_id": ids, "epoch": integers, "round": integers, "timestamp": integers,
       "measured_at": st.one_of(integers, st.none()), "value": numbers, "reason": reasons,
       "readings": st.one_of(st.lists(st.just({"node_id": "n1", "value": 1.0}), min_size=63, max_size=66), odd),
       "colour": st.just(1)}

valid_value = st.one_of(st.floats(-1e9, 1e9), st.integers(-(10**9), 10**9))
valid_reading = st.fixed_dictionaries({"node_id": good_ids, "value": valid_value},
                                      optional={"measured_at": st.integers(0, 2**62)})
valid_excluded = st.fixed_dictionaries({"node_id": st.just("n3"), "value": valid_value},
                                       optional={"reason": st.integers(0, 200).map(lambda n: "r" * n)})
valid_aggregates = st.fixed_dictionaries(
    {"group": st.just("boiler-1"), "epoch": st.integers(0, 2**62), "round": st.integers(0, 2**62),
     "timestamp": st.integers(0, NOW + SKEW), "value": valid_value},
    optional={"readings": st.lists(valid_reading, min_size=1, max_size=3),
              "excluded": st.lists(valid_excluded, min_size=1, max_size=3)})


@st.composite
def aggregates(draw):
    """A valid aggregate, then up to two changes: a key set to an edge value, added or removed."""
    doc = copy.deepcopy(draw(valid_aggregates))
    for _ in range(draw(st.integers(0, 2))):
        entries = [doc[name][0] for name in ("readings", "excluded")
                   if isinstance(doc.get(name), list) and doc[name] and isinstance(doc[name][0], dict)]
        target = draw(st.sampled_from([doc, *entries]))
        key = draw(st.sampled_from(sorted(BAD)))
        if key in target and draw(st.integers(0, 4)) == 0:
            del target[key]
        else:
            target[key] = copy.deepcopy(draw(BAD[key]))  # never mutate a shared example
    return doc


aggregates = st.one_of(aggregates(), odd)

GOOD = {"group": "boiler-1", "epoch": 17, "round": 42, "timestamp": NOW, "value": 71.3,
        "readings": [{"node_id": "n1", "value": 71.2, "measured_at": NOW - 20}],
        "excluded": [{"node_id": "n3", "value": 150.0, "reason": "beyond 3.5 MAD of median"}]}


def _edge_accepts(doc) -> bool:
    try:
        validate_aggregate(doc, NOW)
    except SchemaError:
        return False
    return True


def _web_accepts(doc) -> bool:
    try:
        parse_aggregate(doc, NOW, SKEW)
    except BadInput:
        return False
    return True


@MANY
@given(aggregates)
@example({**GOOD, "value": 2e9})
@example({**GOOD, "value": 1e9})
@example({**GOOD, "excluded": [{"node_id": "n3", "value": 1.0, "reason": "x" * 201}]})
@example({**GOOD, "excluded": [{"node_id": "n3", "value": 1.0, "reason": "x" * 200}]})
@example({**GOOD, "readings": [{"node_id": "n1", "value": 1.0, "measured_at": 1.5}]})
@example({**GOOD, "readings": [{"node_id": "n1", "value": 1.0, "measured_at": True}]})
@example({**GOOD, "epoch": 2**62 + 1})
@example({**GOOD, "value": float("nan")})
def test_edge_and_web_tier_agree_on_every_aggregate(doc):
    assert _edge_accepts(doc) == _web_accepts(doc), doc


def test_the_aggregates_the_issue_names_are_refused_on_both_sides():
    for doc in ({**GOOD, "value": 2e9},
                {**GOOD, "excluded": [{"node_id": "n3", "value": 1.0, "reason": "x" * 201}]},
                {**GOOD, "readings": [{"node_id": "n1", "value": 1.0, "measured_at": 1.5}]}):
        assert (_edge_accepts(doc), _web_accepts(doc)) == (False, False), doc
    assert (_edge_accepts({**GOOD, "value": -1e9}), _web_accepts({**GOOD, "value": -1e9})) == (True, True)


config_numbers = st.one_of(
    st.sampled_from([0, 0.001, 0.0999, 0.1, 0.3, 0.5, 0.8, 1, 1.5, 5, 59.9, 60, 61, 100, 101, 3600, 3601, 1e9, 2e9,
                     -1, -0.0]),
    st.floats(0, 4000), odd)
urls = st.one_of(st.sampled_from(["ftp://a", "http://", "http:///x", "http://user:pw@a", "http://@a", "http://a:99999",
                                  "http://a b", "//a", "a:8000", "https://a" + "x" * 600, "HTTP://A"]),
                 st.text(max_size=12), odd)
valid_urls = st.sampled_from(["http://a:8000", "https://b/api/v1/readings", "http://127.0.0.1:8000/", "https://[::1]:1"])
valid_configs = st.fixed_dictionaries(
    {}, optional={"sampling_period_s": st.floats(0.1, 3600), "round_timeout_s": st.floats(0.01, 1),
                  "http_timeout_s": st.floats(0.01, 0.09), "fusion_k": st.floats(0.5, 100),
                  "fusion_min_spread": st.floats(0, 1e9), "api_urls": st.lists(valid_urls, max_size=3)})
CONFIG_BAD = {"sampling_period_s": config_numbers, "round_timeout_s": config_numbers, "http_timeout_s": config_numbers,
              "fusion_k": config_numbers, "fusion_min_spread": config_numbers, "period": st.just(1),
              "api_urls": st.one_of(st.lists(st.one_of(valid_urls, urls), min_size=1, max_size=3),
                                    st.lists(st.just("http://a"), min_size=16, max_size=17), odd)}


@st.composite
def configs(draw):
    """A valid document, then up to two keys set to edge values (alone, or across keys)."""
    doc = draw(valid_configs)
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from(sorted(CONFIG_BAD)))
        doc[key] = draw(CONFIG_BAD[key])
    return doc


configs = st.one_of(configs(), odd)


def _edge_applies(doc) -> bool:
    """What a node with the default period does with `doc` as its cluster config."""
    try:
        merge({"sampling_period_s": 1.0}, parse_document(json.dumps(doc)))
    except ConfigError:
        return False
    return True


def _web_writes(doc) -> bool:
    try:
        validate_config(doc)
    except BadInput:
        return False
    return True


@MANY
@given(configs)
@example({"round_timeout_s": 5})
@example({"http_timeout_s": 1})
@example({"sampling_period_s": 0.001})
@example({"sampling_period_s": 0.5, "round_timeout_s": 0.8})
@example({"api_urls": ["http://user:pw@web:8000"]})
@example({"fusion_k": 10**400})
def test_edge_and_web_tier_agree_on_every_config_document(doc):
    assert _edge_applies(doc) == _web_writes(doc), doc


def test_the_configs_the_issue_names_are_refused_on_both_sides():
    for doc in ({"round_timeout_s": 5}, {"sampling_period_s": 0.001}, {"api_urls": ["http://u:p@web:8000"]}):
        assert (_edge_applies(doc), _web_writes(doc)) == (False, False), doc
    assert (_edge_applies({"sampling_period_s": 0.1}), _web_writes({"sampling_period_s": 0.1})) == (True, True)


def test_the_contracts_import_neither_side():
    paths = sorted((ROOT / "contracts").glob("*.py"))
    assert len(paths) >= 3
    for path in paths:
        tree = ast.parse(path.read_text())
        names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        names += [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
        assert not [n for n in names if n.split(".")[0] in ("webapp", "edge")], path


def test_the_edge_checks_timestamps_with_the_web_tiers_default_skew():
    assert aggregate_contract.MAX_FUTURE_SKEW_MS == Settings().limits.max_future_skew_s * 1000
    assert _edge_accepts({**GOOD, "timestamp": NOW + 5_000}) and not _edge_accepts({**GOOD, "timestamp": NOW + 5_001})


# --- the ZooKeeper layout (contracts/zk_layout.py) ---------------------------------------------

def _documented_znodes() -> list[str]:
    """The znode column of docs/edge.md's "ZooKeeper layout" table."""
    section = (ROOT / "docs" / "edge.md").read_text().split("## ZooKeeper layout", 1)[1].split("\n## ", 1)[0]
    return [line.split("`")[1] for line in section.splitlines() if line.startswith("| `")]


def test_the_zookeeper_layout_builds_every_znode_docs_describe_and_no_other():
    group = ZkLayout("").group("<g>")
    built = [ZkLayout("").config, group.config, group.node("<id>"), group.election, group.epoch, group.trigger,
             group.queue]
    built = [path.lstrip("/") for path in built]
    documented = _documented_znodes()
    assert len(documented) == len(built)
    for path, row in zip(built, documented):
        assert row == path or row.startswith(path + "/"), (path, row)  # election rows name kazoo's children


def test_the_edge_and_the_web_tier_meet_at_the_same_znodes(zk, zk_hosts, settings, tmp_path):
    """An edge node under a non-default root, and the web tier told the same root, find each
    other's znodes: the web tier lists the node and its term, proves its epoch, and a config it
    writes for the group reaches the node."""
    from edge.__main__ import make_client
    from edge.config import EdgeSettings
    from edge.events import EventLog
    from edge.node import EdgeNode
    from edge.sources import build_source
    from harness.process import wait_until
    from webapp import create_app
    from webapp import shutdown
    from webapp.errors import UnverifiedEpoch

    root, group, key = "/elsewhere", "g-7", "test-key-1"
    edge_settings = EdgeSettings(group=group, node_id="n1", zk_hosts=zk_hosts + zk.chroot, zk_root=root,
                                 session_timeout_s=2.0, source="const:20", spool_dir=str(tmp_path / "spool"),
                                 defaults={"sampling_period_s": 0.3, "api_urls": []})
    client = make_client(edge_settings)
    client.start(timeout=10)
    node = EdgeNode(client, edge_settings, build_source("const:20"), EventLog(None, "n1"))
    node.start()
    app = create_app(settings.replace(zk_hosts=zk_hosts + zk.chroot, zk_root=root, admin_keys=(key,)))
    try:
        wait_until(lambda: node.epoch is not None and app.extensions["zk"].connected, 15, "a leader, a web client")
        view = app.test_client().get("/api/v1/cluster").json
        assert view["root"] == root and list(view["groups"]) == [group]
        term = view["groups"][group]
        assert (term["epoch"], [n["node_id"] for n in term["live_nodes"]]) == (node.epoch, ["n1"])
        app.extensions["epochs"].admit(group, node.epoch)  # proved by the epoch znode the leader wrote
        with pytest.raises(UnverifiedEpoch):
            app.extensions["epochs"].admit(group, node.epoch + 1)
        answer = app.test_client().put(f"/api/v1/config?group={group}", json={"sampling_period_s": 0.4},
                                       headers={"X-API-Key": key})
        assert answer.status_code == 200, answer.json
        wait_until(lambda: node.hotconfig.current.sampling_period_s == 0.4, 10, "the group's config applied")
        assert zk.exists(f"{root}/groups/{group}/config") and not zk.exists("/aeroguard")
    finally:
        node.stop()
        app.extensions["zk"].stop()
        app.extensions["zk"].close()
        shutdown(app)
