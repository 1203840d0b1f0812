"""Reproducible training of the learned detectors, calibration, export and the manifest.

`train_detectors` fits the IsolationForest, the autoencoder and the LSTM on part of a normal
series, exports them as a new numbered version, scores the held-out rest through the exported
artefacts (the code path serving uses) and sets each threshold at the stated false-alarm rate
of those held-out windows; the context detector (`webapp.detection.context`) is calibrated on
the same held-out readings. The held-out part is interleaved blocks spread over the series
(`held_out_blocks`), so the thresholds see every regime of the baseline, not only its end.
Needs TensorFlow and scikit-learn.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from offline.export import export
from offline.export import write_warmup
from offline.manifest import write_manifest
from webapp.detection.base import as_windows
from webapp.detection.context import ContextDetector
from webapp.detection.iforest import IsolationForestDetector
from webapp.detection.manifest import LEARNED
from webapp.detection.neural import AutoencoderDetector
from webapp.detection.neural import LSTMDetector
from webapp.inference.inprocess import InProcessBackend
from webapp.inference.signature import INPUT_KEY
from webapp.inference.signature import OUTPUT_KEY

NETWORKS = {"autoencoder": AutoencoderDetector, "lstm": LSTMDetector}
SERVED_MODELS = ("autoencoder", "lstm")


@dataclass(frozen=True)
class TrainingPlan:
    """Every parameter of a training run (one set for every series: no per-file tuning)."""

    window_size: int = 10
    held_out: float = 0.3
    false_alarm_rate: float = 0.002
    margin: float = 1.1
    epochs: int = 20
    units: int = 16
    n_estimators: int = 100
    seed: int = 0
    blocks: int = 10  # the series is cut into this many blocks; held_out of them are held out, spread out

    def __post_init__(self) -> None:
        if not 0.05 <= self.held_out <= 0.9:
            raise ValueError("held_out must be in [0.05, 0.9]")
        if not 0.0 < self.false_alarm_rate < 0.5:
            raise ValueError("false_alarm_rate must be in (0, 0.5)")


def calibrate(scores: np.ndarray, false_alarm_rate: float, margin: float = 1.0) -> float:
    """The score that `false_alarm_rate` of held-out normal scores exceed, pushed `margin` out.

    ``margin`` stretches the distance from the median to that quantile (1.0 keeps the
    quantile), which works alike for unbounded errors and for bounded scores such as the
    IsolationForest's, where multiplying the quantile could put it out of reach.

    >>> calibrate(np.arange(1001.0), 0.01)
    990.0
    >>> calibrate(np.arange(1001.0), 0.01, margin=1.1)
    1039.0
    """
    values = np.asarray(scores, dtype=np.float64)
    quantile = float(np.quantile(values, 1.0 - false_alarm_rate))
    median = float(np.median(values))
    return median + margin * (quantile - median)


def held_out_blocks(n: int, held_out: float, blocks: int) -> np.ndarray:
    """Which of `n` readings are held out: about `held_out` of `blocks` equal blocks, spread
    evenly over the series (the last block always among them, as before).

    >>> held_out_blocks(10, 0.3, 10).astype(int).tolist()
    [0, 0, 1, 0, 0, 0, 1, 0, 0, 1]
    """
    count = max(1, round(held_out * blocks))
    chosen = {blocks - 1 - int(round(i * blocks / count)) for i in range(count)}
    block_of = np.minimum((np.arange(n) * blocks) // max(n, 1), blocks - 1)
    return np.isin(block_of, sorted(chosen))


def segment_windows(series: np.ndarray, keep: np.ndarray, size: int) -> np.ndarray:
    """Every window of `size` readings lying wholly inside the readings marked by `keep`.

    >>> segment_windows(np.arange(6.0), np.array([1, 1, 1, 0, 1, 1], bool), 2).tolist()
    [[0.0, 1.0], [1.0, 2.0], [4.0, 5.0]]
    """
    edges = np.flatnonzero(np.diff(np.concatenate([[0], keep.astype(int), [0]])))
    parts = [as_windows(series[a:b], size) for a, b in zip(edges[::2], edges[1::2]) if b - a >= size]
    return np.concatenate(parts) if parts else np.zeros((0, size))


def next_version(models_dir: Path) -> int:
    """One more than the highest version of any learned model under `models_dir`."""
    versions = [int(p.name) for name in LEARNED if (models_dir / name).is_dir()
                for p in (models_dir / name).iterdir() if p.name.isdigit()]
    return max(versions, default=0) + 1


def check_signature(path: Path, window_size: int) -> str:
    """Run ``saved_model_cli show`` on an export and check its serving signature."""
    cli = Path(sys.executable).with_name("saved_model_cli")
    out = subprocess.run(
        [str(cli), "show", "--dir", str(path), "--tag_set", "serve", "--signature_def", "serving_default"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    wanted = [f"inputs['{INPUT_KEY}']", f"outputs['{OUTPUT_KEY}']", f"shape: (-1, {window_size})", "DT_FLOAT"]
    missing = [w for w in wanted if w not in out]
    if missing:
        raise RuntimeError(f"{path}: serving signature lacks {missing}:\n{out}")
    return out


def _check_loaded_signature(path: Path, window_size: int) -> None:
    """The export's serving signature, as loaded: input `window` [n, W] float32 -> `output_0`."""
    from webapp.inference.inprocess import load_signature

    signature = load_signature(path)
    spec = signature.structured_input_signature[1].get(INPUT_KEY)
    if spec is None or spec.shape.as_list() != [None, window_size] or spec.dtype.name != "float32":
        raise RuntimeError(f"{path}: serving input is {spec}, not float32 [None, {window_size}]")
    if OUTPUT_KEY not in signature.structured_outputs:
        raise RuntimeError(f"{path}: serving outputs {list(signature.structured_outputs)} lack {OUTPUT_KEY}")


def write_models_config(models_dir: Path, base: str = "/models", keep: int = 2) -> Path:
    """TF Serving's ``models.config``: every served model, its newest `keep` versions live."""
    blocks = [
        "  config {\n"
        f'    name: "{name}"\n'
        f'    base_path: "{base}/{name}"\n'
        '    model_platform: "tensorflow"\n'
        f"    model_version_policy {{ latest {{ num_versions: {keep} }} }}\n"
        "  }\n"
        for name in SERVED_MODELS
    ]
    path = models_dir / "models.config"
    path.write_text("model_config_list {\n" + "".join(blocks) + "}\n", encoding="utf-8")
    return path


def prune(models_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` versions of each learned model."""
    for name in LEARNED:
        folder = models_dir / name
        found = (int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else ()
        versions = sorted(found, reverse=True)
        for old in versions[keep:]:
            shutil.rmtree(folder / str(old))


def train_detectors(values: np.ndarray, models_dir: str | Path, plan: TrainingPlan, source: str,
                    version: int | None = None, keep: int = 2,
                    progress: Callable[[str], object] | None = None, cli_check: bool = True) -> dict[str, dict]:
    """Train, export and calibrate every learned detector on a normal series; write the manifest.

    Parameters
    ----------
    values
        Normal readings in physical units, in time order (NaN gaps are dropped).
    models_dir
        Where ``<model>/<version>/``, ``models.config`` and ``manifest.json`` go.
    plan
        The training parameters.
    source
        Where the readings came from, for the manifest.
    version
        The version number to write (default: one more than the newest present).
    keep
        Versions of each model kept on disk and live in TF Serving.
    progress
        Called with a stage name, returns a Keras callback (or None) for that stage.
    cli_check
        Also inspect each export with ``saved_model_cli`` (a subprocess importing TensorFlow,
        ~4 s); the signature is always checked in process.

    Returns
    -------
    The manifest entries written, by detector name.
    """
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    series = np.asarray(values, dtype=np.float64)
    series = series[np.isfinite(series)]
    held = held_out_blocks(len(series), plan.held_out, plan.blocks)
    fit_windows = segment_windows(series, ~held, plan.window_size)
    held_windows = segment_windows(series, held, plan.window_size)
    version = version or next_version(models_dir)
    entries: dict[str, dict] = {}
    step = progress or (lambda stage: None)

    step("isolation_forest")
    forest = IsolationForestDetector(plan.window_size, plan.n_estimators, seed=plan.seed).fit(fit_windows)
    artefact = Path("isolation_forest") / str(version) / "forest.npz"
    (models_dir / artefact).parent.mkdir(parents=True, exist_ok=True)
    forest.save(models_dir / artefact)
    served = IsolationForestDetector.load(models_dir / artefact, str(version))
    entries["isolation_forest"] = manifest_entry(forest, served.score(held_windows), plan, version,
                                                 artefact=str(artefact))

    backend = InProcessBackend(models_dir)
    for name, cls in NETWORKS.items():
        detector = cls(plan.window_size, plan.units, plan.epochs, plan.seed)
        detector.fit(fit_windows, progress=step(name))
        path = export(detector.scorer_, models_dir / name / str(version))
        write_warmup(path, name, plan.window_size)
        _check_loaded_signature(path, plan.window_size)
        if cli_check:
            check_signature(path, plan.window_size)
        served = cls(plan.window_size, backend=backend, model_version=version)
        entries[name] = manifest_entry(detector, served.score(held_windows), plan, version)

    step("context")
    context = ContextDetector().fit(fit_windows)
    entries["context"] = manifest_entry(context, context.score_series(series)[held], plan, version,
                                params=context.params(), window_size=context.readings)

    write_models_config(models_dir, keep=keep)
    prune(models_dir, keep)
    training = {"source": source, "readings": int(len(series)), "fit_windows": len(fit_windows),
                "held_out_windows": len(held_windows), "plan": asdict(plan),
                "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_manifest(models_dir, entries, training)
    return entries


def manifest_entry(detector, held_scores: np.ndarray, plan: TrainingPlan, version: int, artefact: str | None = None,
                   params: dict | None = None, window_size: int | None = None) -> dict:
    """A detector's manifest entry: its threshold calibrated on `held_scores` (out-of-sample
    scores), the calibration's figures (the median score sets the hold level of its votes,
    `webapp.detection.hold`), its profile, and its artefact or parameters. Used by training and
    by `offline.rules` for the detectors calibrated after it."""
    held_scores = held_scores[np.isfinite(held_scores)]  # the context detector abstains while young
    threshold = calibrate(held_scores, plan.false_alarm_rate, plan.margin)
    entry = {
        "version": version,
        "threshold": round(threshold, 8),
        "window_size": window_size or plan.window_size,
        "profile": detector.profile_.as_dict(),
        "calibration": {
            "false_alarm_rate": plan.false_alarm_rate,
            "margin": plan.margin,
            "held_out_windows": int(len(held_scores)),
            "held_out_rate_above": float(np.mean(held_scores > threshold)),
            "median_score": float(np.median(held_scores)),
        },
    }
    if artefact:
        entry["artefact"] = artefact
    if params:
        entry["params"] = params
    return entry

