"""Robust fusion: median/MAD exclusion, cross-checked against numpy."""
from __future__ import annotations

import math

import numpy as np
import pytest

from edge.fusion import MAD_TO_SIGMA
from edge.fusion import fuse


def test_one_bad_node_is_excluded_and_reported():
    fused = fuse({"n1": 71.2, "n2": 71.3, "n3": 150.0})
    assert [n for n, _, _ in fused.excluded] == ["n3"]
    assert "MAD" in fused.excluded[0][2]
    assert fused.value == pytest.approx(71.25)


def test_a_real_anomaly_seen_by_all_nodes_is_kept():
    fused = fuse({"n1": 140.1, "n2": 139.8, "n3": 140.4})
    assert fused.excluded == ()
    assert fused.value == pytest.approx(np.mean([140.1, 139.8, 140.4]))


def test_identical_sensors_do_not_exclude_each_other_over_noise():
    fused = fuse({"n1": 20.0, "n2": 20.0, "n3": 20.3}, k=3.5, min_spread=0.5)
    assert fused.excluded == ()


@pytest.mark.parametrize("values", [{"n1": 5.0}, {"n1": 5.0, "n2": 500.0}])
def test_fewer_than_three_readings_outvote_nobody(values):
    fused = fuse(values)
    assert fused.excluded == ()
    assert fused.value == pytest.approx(np.mean(list(values.values())))


def test_bound_matches_a_numpy_reference():
    rng = np.random.default_rng(7)
    for _ in range(200):
        values = rng.normal(50, 2, size=rng.integers(3, 9))
        values[0] += rng.choice([0.0, 30.0])
        readings = {f"n{i}": float(v) for i, v in enumerate(values)}
        median = np.median(values)
        bound = max(3.0 * MAD_TO_SIGMA * np.median(np.abs(values - median)), 0.1)
        keep = np.abs(values - median) <= bound
        fused = fuse(readings, k=3.0, min_spread=0.1)
        assert fused.value == pytest.approx(values[keep].mean())
        assert {n for n, _, _ in fused.excluded} == {f"n{i}" for i in np.flatnonzero(~keep)}


@pytest.mark.parametrize("readings, k, spread", [({}, 3.5, 0.5), ({"n1": math.nan}, 3.5, 0.5),
                                                 ({"n1": 1.0}, 0.0, 0.5), ({"n1": 1.0}, 3.5, -1.0)])
def test_bad_arguments_raise(readings, k, spread):
    with pytest.raises(ValueError):
        fuse(readings, k, spread)
