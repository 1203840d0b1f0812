"""Training: reproducible versions, calibrated thresholds, exports TF Serving can load, manifest."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from edge.simulator import TemperatureSimulator
from offline.sources import training_series
from offline.training import TrainingPlan
from offline.training import calibrate
from offline.training import train_detectors
from webapp.config import Settings
from webapp.detection import build_panel
from webapp.detection.base import Window
from webapp.detection.manifest import CALIBRATED
from webapp.detection.manifest import load_manifest
from webapp.inference.signature import SERVED_MODELS

ROOT = Path(__file__).resolve().parents[1]
PLAN = TrainingPlan(epochs=2, units=8, n_estimators=20, seed=5)


@pytest.fixture(scope="module")
def series():
    return TemperatureSimulator(seed=4).series(2500)[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, series):
    models = tmp_path_factory.mktemp("models")
    entries = train_detectors(series, models, PLAN, source="test", cli_check=False)
    return models, entries


def test_writes_a_version_of_every_model_and_the_manifest(trained):
    models, entries = trained
    assert set(entries) == set(CALIBRATED)
    context = entries["context"]
    assert context["params"]["context"] == context["window_size"] - context["params"]["tail"]
    for name in SERVED_MODELS:
        assert (models / name / "1" / "saved_model.pb").is_file()
    assert (models / "isolation_forest" / "1" / "forest.npz").is_file()
    manifest = load_manifest(models)
    assert {e.version for e in manifest.values()} == {1}
    assert manifest["lstm"].profile.scale > 0 and manifest["lstm"].window_size == PLAN.window_size
    body = json.loads((models / "manifest.json").read_text())
    assert body["training"]["source"] == "test" and body["training"]["plan"]["seed"] == 5


def test_thresholds_hold_the_stated_false_alarm_rate(trained):
    _, entries = trained
    for entry in entries.values():
        calibration = entry["calibration"]
        assert calibration["held_out_windows"] > 500
        assert calibration["held_out_rate_above"] <= PLAN.false_alarm_rate
        assert entry["threshold"] > calibration["median_score"]


def test_models_config_lists_the_served_models(trained):
    from tensorflow_serving.config import model_server_config_pb2

    models, _ = trained
    config = text_format.Parse((models / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    assert [c.name for c in config.model_config_list.config] == list(SERVED_MODELS)


def test_same_seed_same_thresholds(tmp_path, series, trained):
    _, first = trained
    again = train_detectors(series, tmp_path, PLAN, source="test", cli_check=False)
    for name in first:
        assert again[name]["threshold"] == pytest.approx(first[name]["threshold"], rel=1e-5)


def test_new_versions_are_numbered_and_old_ones_pruned(tmp_path, series):
    short = series[:800]
    train_detectors(short, tmp_path, PLAN, source="test", cli_check=False)
    entries = train_detectors(short, tmp_path, PLAN, source="test", keep=1, cli_check=False)
    assert {e["version"] for e in entries.values()} == {2}
    assert sorted(p.name for p in (tmp_path / "lstm").iterdir()) == ["2"]
    history = json.loads((tmp_path / "manifest.json").read_text())["history"]
    assert history[-1]["models"]["lstm"]["version"] == 1


def test_panel_judges_with_freshly_trained_models(trained):
    models, _ = trained
    panel = build_panel(Settings().replace(models_dir=str(models), inference_backend="inprocess"))
    values = TemperatureSimulator(seed=4).series(40, start_s=100)[1]  # enough past for the context detector
    stamps = tuple(range(0, 40_000, 1000))
    assert panel.judge(Window(tuple(values), stamps)).degraded == ()
    jump = panel.judge(Window(tuple(values[:-1]) + (values[-1] + 6.0,), stamps))
    assert jump.verdict == "critical"


def test_thresholds_are_calibrated_on_blocks_spread_over_the_series():
    """A baseline whose end is calm and whose start is not: held-out blocks from the whole series
    see both regimes (the last 30 % alone would see only the calm end)."""
    from offline.training import held_out_blocks
    from offline.training import segment_windows

    held = held_out_blocks(1000, 0.3, 10)
    assert held.mean() == pytest.approx(0.3) and held[:500].any() and held[-100:].all()
    series = np.arange(1000.0)
    fit, test = segment_windows(series, ~held, 10), segment_windows(series, held, 10)
    assert len(fit) + len(test) == 1000 - 6 * 9  # six segments; no window straddles a boundary
    assert not set(fit[:, -1]) & set(test[:, -1])


def test_cli_trains_from_a_csv(tmp_path, series):
    data = tmp_path / "normal.csv"
    data.write_text("timestamp;temp\n" + "".join(f"{i};{v}\n" for i, v in enumerate(series[:900])))
    values, times, source = training_series(str(data), "temp", None, 0, 0)
    assert source == "csv:normal.csv:temp" and np.allclose(values, series[:900])
    assert times.tolist() == list(range(900))
    run = subprocess.run([sys.executable, "-m", "scripts.train", "--csv", str(data), "--value-column", "temp",
                          "--models-dir", str(tmp_path / "m"), "--epochs", "1", "--units", "4", "--seed", "2"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "lstm: version 1" in run.stdout
    assert "seasonal: not seated (needs two days of training readings)" in run.stdout  # 900 s of readings
    assert json.loads((tmp_path / "m" / "manifest.json").read_text())["training"]["source"] == "csv:normal.csv:temp"


def test_calibrate_is_a_quantile():
    scores = np.linspace(0, 1, 10_001)
    assert calibrate(scores, 0.01) == pytest.approx(0.99)
    assert calibrate(scores, 0.01, margin=2.0) == pytest.approx(0.5 + 2 * 0.49)
