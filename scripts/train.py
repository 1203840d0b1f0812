"""Train the learned detectors and write a new model version: ``python -m scripts.train``.

Sources: the built-in simulator (default), a CSV column (``--csv FILE --value-column C``),
or a sensor's history in Redis (``--from-redis SENSOR``). Seeded and reproducible; writes
``<models-dir>/<model>/<version>/``, ``models.config`` and ``manifest.json``. The readers and the
progress bar are offline/sources.py, the training offline/training.py; with the readings' times,
the seasonal detector is calibrated after training (offline/rules.py).
"""
from __future__ import annotations

import argparse
import os
import sys


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
    from offline.rules import calibrate_rules
    from offline.sources import keras_progress
    from offline.sources import training_series
    from offline.training import TrainingPlan
    from offline.training import train_detectors

    values, times, source = training_series(args.csv, args.value_column, args.from_redis, args.readings, args.seed)
    if len(values) < 20 * args.window_size:
        raise SystemExit(f"train: {len(values)} readings are too few (need {20 * args.window_size})")
    plan = TrainingPlan(window_size=args.window_size, false_alarm_rate=args.false_alarm_rate,
                        epochs=args.epochs, units=args.units, seed=args.seed)
    entries = train_detectors(values, args.models_dir, plan, source, version=args.version, keep=args.keep,
                              progress=lambda stage: keras_progress(stage, plan.epochs))
    for name, entry in entries.items():
        print(f"{name}: version {entry['version']}, threshold {entry['threshold']:.6g}, "
              f"held-out above threshold {entry['calibration']['held_out_rate_above']:.4f}")
    if times is None:
        print("seasonal: not seated (the readings have no times)")
    else:
        print(calibrate_rules(args.models_dir, values, times, plan))
    return 0


if __name__ == "__main__":
    sys.exit(main())
