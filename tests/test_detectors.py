"""The detector contract suite (river's test_estimators): every registered detector, every check.

A detector joins by being listed in `DETECTORS` with a ``_unit_test_params()`` classmethod;
there is no skip list. Learned detectors are fitted once per module on simulator data.
"""
from __future__ import annotations

import inspect
import pickle
import tracemalloc

import numpy as np
import pytest

from edge.simulator import Fault
from edge.simulator import TemperatureSimulator
from offline.training import calibrate
from webapp.config import PhysicalLimits
from webapp.config import Settings
from webapp.detection import build_panel
from webapp.detection.base import Window
from webapp.detection.base import as_windows
from webapp.detection.context import ContextDetector
from webapp.detection.features import Profile
from webapp.detection.features import window_features
from webapp.detection.iforest import IsolationForestDetector
from webapp.detection.neural import AutoencoderDetector
from webapp.detection.neural import LSTMDetector
from webapp.detection.physical import PhysicalRule
from webapp.detection.vote import Abstainer
from webapp.detection.vote import Voter

DETECTORS = [PhysicalRule, IsolationForestDetector, AutoencoderDetector, LSTMDetector, ContextDetector]
W = 10
STAMPS = tuple(range(0, W * 1000, 1000))
FALSE_ALARM_RATE = 0.02


def normal_windows(seed: int, n: int = 3000) -> np.ndarray:
    return as_windows(TemperatureSimulator(seed=seed).series(n)[1], W)


def labelled_stream() -> tuple[np.ndarray, np.ndarray]:
    """Windows of a faulty stream and whether their newest reading is faulty."""
    faults = [Fault("spike", 300, 5, 4.0), Fault("drift", 700, 200, 3.0), Fault("stuck", 1100, 60),
              Fault("noise", 1400, 60, 12.0), Fault("spike", 1700, 3, -5.0)]
    _, values, labels = TemperatureSimulator(seed=11, faults=faults).series(2000)
    return as_windows(values, W), labels[W - 1:]


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties counted half."""
    pos, neg = scores[labels], scores[~labels]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def build(cls):
    return cls(**cls._unit_test_params())


_fitted: dict = {}


def fitted(cls, key: str = "a"):
    """A detector of `cls` fitted on normal data (cached per module: TF training is slow)."""
    if (cls, key) not in _fitted:
        _fitted[(cls, key)] = build(cls).fit(normal_windows(seed=1))
    return _fitted[(cls, key)]


def params_of(detector) -> dict:
    names = inspect.signature(type(detector).__init__).parameters
    return {name: getattr(detector, name) for name in names if name != "self"}


def probe() -> np.ndarray:
    windows, _ = labelled_stream()
    return windows[::40]


@pytest.mark.parametrize("cls", DETECTORS, ids=lambda c: c.name)
def test_docstring_has_an_example(cls):
    assert cls.__doc__ and "Examples" in cls.__doc__ and ">>>" in cls.__doc__


@pytest.mark.parametrize("cls", DETECTORS, ids=lambda c: c.name)
def test_init_stores_params_verbatim_and_clone_keeps_them(cls):
    params = cls._unit_test_params()
    detector = cls(**params)
    assert {k: params_of(detector)[k] for k in params} == params
    clone = cls(**params_of(detector))
    assert params_of(clone) == params_of(detector)


@pytest.mark.parametrize("cls", DETECTORS, ids=lambda c: c.name)
def test_pickle_round_trip_keeps_scores(cls):
    detector = fitted(cls)
    copy = pickle.loads(pickle.dumps(detector))
    np.testing.assert_allclose(copy.score(probe()), detector.score(probe()), rtol=1e-6)


@pytest.mark.parametrize("cls", DETECTORS, ids=lambda c: c.name)
def test_same_seed_gives_same_scores(cls):
    np.testing.assert_allclose(fitted(cls, "a").score(probe()), fitted(cls, "b").score(probe()), rtol=1e-5)


@pytest.mark.parametrize("cls", DETECTORS, ids=lambda c: c.name)
def test_score_one_is_pure_and_matches_batch(cls):
    detector = fitted(cls)
    rows = probe()[:20]
    before = {k: id(v) for k, v in vars(detector).items()}
    window = Window(tuple(rows[0]), STAMPS)
    first = detector.score_one(window)
    assert detector.score_one(window) == first
    assert window.values == tuple(rows[0])
    assert {k: id(v) for k, v in vars(detector).items()} == before
    one_by_one = [detector.score_one(Window(tuple(r), STAMPS)) for r in rows]
    np.testing.assert_allclose(one_by_one, detector.score(rows), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cls", DETECTORS, ids=lambda c: c.name)
def test_memory_stays_bounded_over_a_long_stream(cls):
    detector = fitted(cls)
    rows = normal_windows(seed=5, n=1200)
    windows = [Window(tuple(r), STAMPS) for r in rows]
    for w in windows[:100]:
        detector.score_one(w)
    tracemalloc.start()
    try:
        for w in windows[100:300]:
            detector.score_one(w)
        early, _ = tracemalloc.get_traced_memory()
        for w in windows[300:]:
            detector.score_one(w)
        late, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert late - early < 256 * 1024, f"{cls.name} grew by {late - early} bytes over 900 windows"


@pytest.mark.parametrize("cls", DETECTORS, ids=lambda c: c.name)
def test_roc_auc_on_a_labelled_synthetic_stream(cls):
    windows, labels = labelled_stream()
    keep = np.isfinite(windows).all(axis=1)
    assert auc(fitted(cls).score(windows[keep]), labels[keep]) >= 0.5


@pytest.mark.parametrize("cls", DETECTORS, ids=lambda c: c.name)
def test_no_collapse_on_held_out_normal_data(cls):
    """Scores on normal data vary, and the calibrated threshold keeps its false-alarm rate."""
    detector = fitted(cls)
    calibration = detector.score(normal_windows(seed=2))
    assert np.ptp(calibration) > 0, f"{cls.name} gives one constant score on normal data"
    threshold = getattr(cls, "fixed_threshold", None) or calibrate(calibration, FALSE_ALARM_RATE)
    fresh = detector.score(normal_windows(seed=3))
    rate = float(np.mean(fresh > threshold))
    assert rate <= 2 * FALSE_ALARM_RATE, f"{cls.name} votes on {rate:.3%} of normal windows"


def test_the_context_detector_sees_a_step_against_its_own_past_and_ends_with_it():
    """A step of 1 °C over the simulator is unusual against the readings before it, at any level,
    and the detector is quiet again by the third reading back (it judges the newest three)."""
    values = TemperatureSimulator(seed=6).series(400)[1]
    detector = ContextDetector(context=288).fit(as_windows(values[:300], W))
    threshold = calibrate(detector.score_series(values[:300])[40:], 0.002)
    stamps = tuple(range(0, 400_000, 1000))
    for offset in (0.0, 50.0):  # the same past, moved: the same scores
        raised = values + offset
        raised[360:365] += 1.0
        scores = [detector.score_one(Window(tuple(raised[:end]), stamps[:end])) for end in range(355, 375)]
        assert max(scores[:5]) < threshold < max(scores[5:10])  # 360..364 stepped
        assert max(scores[5 + 5 + 2:]) < threshold  # from the third reading back (367) on: quiet
    young = Window(tuple(values[:20]), stamps[:20])
    with pytest.raises(Exception, match="needs 33 readings"):
        detector.score_one(young)


def test_compiled_forest_equals_scikit_learn():
    forest = fitted(IsolationForestDetector)
    rng = np.random.default_rng(7)
    windows = np.vstack([normal_windows(seed=4, n=600), 20 + rng.normal(0, 3, (300, W))])
    features = window_features(windows, forest.profile_)
    np.testing.assert_allclose(forest.score(windows), -forest.forest_.score_samples(features), rtol=1e-12)


def test_forest_artefact_round_trip(tmp_path):
    forest = fitted(IsolationForestDetector)
    forest.save(tmp_path / "forest.npz")
    loaded = IsolationForestDetector.load(tmp_path / "forest.npz", version="4")
    assert loaded.version == "4" and loaded.profile_ == forest.profile_
    np.testing.assert_array_equal(loaded.score(probe()), forest.score(probe()))


def test_profile_keeps_the_level():
    profile = Profile.fit(np.array([19.0, 20.0, 21.0]))
    assert window_features(np.full((1, W), 25.0), profile)[0, 0] > 5


def test_short_windows_make_learned_detectors_abstain():
    voter = Voter(fitted(IsolationForestDetector), 0.7)
    ballot = voter.ballot(Window((20.0, 20.1), (0, 1000)))
    assert ballot.vote is None and "needs 10 readings" in ballot.reason


def test_physical_rule_sees_a_stuck_sensor_and_a_jump():
    rule = build(PhysicalRule)
    assert rule.score_one(Window((21.5,) * W, STAMPS)) > 1.0
    assert rule.score_one(Window((20.0,) * (W - 1) + (29.0,), STAMPS)) > 1.0
    assert rule.score_one(Window(tuple(20 + 0.01 * np.arange(W)), STAMPS)) < 1.0


def test_build_panel_uses_the_committed_models():
    panel = build_panel(Settings().replace(inference_backend="inprocess"))
    assert panel.names == ("physical", "isolation_forest", "autoencoder", "lstm", "context")
    assert panel.readings == 291  # the context detector's 288 readings and the newest 3
    values = TemperatureSimulator(seed=8).series(panel.readings, start_s=500)[1]
    stamps = tuple(range(0, panel.readings * 1000, 1000))
    calm = panel.judge(Window(tuple(values), stamps))
    assert calm.verdict == "normal" and calm.degraded == ()
    spike = panel.judge(Window(tuple(values[:-1]) + (values[-1] + 8.0,), stamps))
    assert spike.verdict == "critical"
    body = spike.as_dict()
    assert set(body["model_versions"]) == {"physical", "isolation_forest", "autoencoder", "lstm", "context"}
    assert all({"vote", "score", "threshold"} <= set(v) for v in body["votes"].values())


def test_build_panel_abstains_without_a_manifest(tmp_path):
    panel = build_panel(Settings().replace(models_dir=str(tmp_path)))
    assert [type(v) for v in panel.voters[1:]] == [Abstainer] * 4
    decision = panel.judge(Window((20.0,) * W, STAMPS))
    assert decision.degraded == ("isolation_forest", "autoencoder", "lstm", "context")


def test_threshold_override_applies_to_model_name():
    panel = build_panel(Settings().replace(threshold=123.0, model_name="lstm"))
    thresholds = {v.name: v.threshold for v in panel.voters}
    assert thresholds["lstm"] == 123.0 and thresholds["autoencoder"] != 123.0


def test_vote_quorum_is_configurable():
    values = TemperatureSimulator(seed=8).series(W, start_s=500)[1]
    window = Window(tuple(values[:-1]) + (values[-1] + 8.0,), STAMPS)
    limits = PhysicalLimits(low=-100.0, high=100.0, max_rate=1000.0)
    unanimous = build_panel(Settings().replace(vote_required=4, physical=limits)).judge(window)
    assert unanimous.votes == 3 and unanimous.verdict == "warning"
    assert build_panel(Settings().replace(vote_required=3, physical=limits)).judge(window).verdict == "critical"


def test_simulator_faults_do_what_they_say():
    clean = TemperatureSimulator(seed=2)
    faults = [Fault("drift", 100, 100, 4.0), Fault("stuck", 300, 50), Fault("noise", 400, 50, 20.0)]
    sim = TemperatureSimulator(seed=2, faults=faults)
    assert sim.read(150.0) - clean.read(150.0) == pytest.approx(2.0)
    assert sim.read(320.0) == sim.read(349.0) == clean.clean(300.0)
    burst = [sim.read(400.0 + i) - clean.read(400.0 + i) for i in range(50)]
    assert np.std(burst) > 10 * clean.noise
    with pytest.raises(ValueError, match="kind"):
        Fault("meteor", 0, 1)
