"""Train the learned detectors and write a new model version: ``python -m scripts.train``.

Sources: the built-in simulator (default), a CSV column (``--csv FILE --value-column C``),
or a sensor's history in Redis (``--from-redis SENSOR``). Seeded and reproducible; writes
``<models-dir>/<model>/<version>/``, ``models.config`` and ``manifest.json``.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

import numpy as np


def simulator_series(readings: int, seed: int) -> np.ndarray:
    """Normal readings of the built-in simulator, one per second."""
    from edge.simulator import TemperatureSimulator

    return TemperatureSimulator(seed=seed).series(readings)[1]


def csv_series(path: str, column: str) -> np.ndarray:
    """One numeric column of a CSV file (``,`` or ``;`` separated), in file order."""
    with open(path, encoding="utf-8", newline="") as handle:
        dialect = csv.Sniffer().sniff(handle.read(4096), delimiters=",;")
        handle.seek(0)
        reader = csv.DictReader(handle, dialect=dialect)
        if column not in (reader.fieldnames or []):
            raise SystemExit(f"train: column {column!r} not in {path} (columns: {reader.fieldnames})")
        return np.array([float(row[column]) for row in reader if row[column] not in ("", None)])


def redis_series(sensor: str, count: int) -> np.ndarray:
    """The newest `count` readings of `sensor` stored by the web tier (REDIS_URL/REDIS_HOST)."""
    import redis

    from webapp.config import Settings
    from webapp.storage import Store

    settings = Settings.from_env()
    store = Store(redis.Redis.from_url(settings.storage.redis_url), settings)
    return np.array([value for _, value in store.read_range(sensor, "-", "+", count, latest=True)])


def keras_progress(stage: str, epochs: int):
    """A tqdm bar over the epochs of one network (None for stages that are not networks)."""
    from tqdm import tqdm

    if stage == "isolation_forest":
        print("training isolation_forest", file=sys.stderr)
        return None
    import keras

    class EpochBar(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.bar = tqdm(total=epochs, desc=f"training {stage}", unit="epoch", file=sys.stderr)

        def on_epoch_end(self, epoch, logs=None):
            self.bar.set_postfix(loss=f"{(logs or {}).get('loss', float('nan')):.4f}")
            self.bar.update(1)

        def on_train_end(self, logs=None):
            self.bar.close()

    return EpochBar()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--csv", help="train from this CSV file")
    source.add_argument("--from-redis", metavar="SENSOR", help="train from this sensor's history in Redis")
    parser.add_argument("--value-column", default="value", help="CSV column with the readings")
    parser.add_argument("--readings", type=int, default=20_000, help="simulator/Redis readings to use")
    parser.add_argument("--models-dir", default="serving/models")
    parser.add_argument("--version", type=int, help="version number (default: next)")
    parser.add_argument("--keep", type=int, default=2, help="versions kept per model")
    parser.add_argument("--window-size", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--units", type=int, default=16)
    parser.add_argument("--false-alarm-rate", type=float, default=0.002,
                        help="share of held-out normal windows above each threshold")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from offline.training import TrainingPlan
    from offline.training import train_detectors

    if args.csv:
        values, source = csv_series(args.csv, args.value_column), f"csv:{Path(args.csv).name}:{args.value_column}"
    elif args.from_redis:
        values, source = redis_series(args.from_redis, args.readings), f"redis:{args.from_redis}"
    else:
        values, source = simulator_series(args.readings, args.seed), f"simulator:seed={args.seed}"
    if len(values) < 20 * args.window_size:
        raise SystemExit(f"train: {len(values)} readings are too few (need {20 * args.window_size})")
    plan = TrainingPlan(window_size=args.window_size, false_alarm_rate=args.false_alarm_rate,
                        epochs=args.epochs, units=args.units, seed=args.seed)
    entries = train_detectors(values, args.models_dir, plan, source, version=args.version, keep=args.keep,
                              progress=lambda stage: keras_progress(stage, plan.epochs))
    for name, entry in entries.items():
        print(f"{name}: version {entry['version']}, threshold {entry['threshold']:.6g}, "
              f"held-out above threshold {entry['calibration']['held_out_rate_above']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
