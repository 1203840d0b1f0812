"""Where training reads its normal readings, and how it shows its progress.

Three sources, each a 1-D array of readings in time order, their times in seconds (None when a
CSV file has no time column) and a label recorded in the manifest (``training.source``): the
built-in simulator, one column of a CSV file, or a sensor's history in Redis as the web tier
stored it. The times calibrate the seasonal detector (`offline.rules`). `keras_progress` draws
a bar per network on stderr.
``scripts/train.py`` is the command line over these and `offline.training.train_detectors`.
"""
from __future__ import annotations

import csv
import sys
from datetime import datetime
from datetime import timezone
from pathlib import Path

import numpy as np

TIME_COLUMNS = ("timestamp", "datetime", "time")  # a CSV file's time column, the first found


def parse_time(text: str) -> float:
    """Seconds since the epoch of an ISO timestamp (naive means UTC) or of a number."""
    try:
        return float(text)
    except ValueError:
        stamp = datetime.fromisoformat(text.strip())
        return (stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)).timestamp()


def simulator_series(readings: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Normal readings of the built-in simulator, one per second, and their times."""
    from edge.simulator import TemperatureSimulator

    times, values, _ = TemperatureSimulator(seed=seed).series(readings)
    return values, times


def csv_series(path: str, column: str) -> tuple[np.ndarray, np.ndarray | None]:
    """One numeric column of a CSV file (``,`` or ``;`` separated), in file order, and the times
    of its rows (ISO or epoch seconds) when the file has a time column."""
    with open(path, encoding="utf-8", newline="") as handle:
        dialect = csv.Sniffer().sniff(handle.read(4096), delimiters=",;")
        handle.seek(0)
        reader = csv.DictReader(handle, dialect=dialect)
        if column not in (reader.fieldnames or []):
            raise SystemExit(f"train: column {column!r} not in {path} (columns: {reader.fieldnames})")
        time_column = next((c for c in TIME_COLUMNS if c in (reader.fieldnames or [])), None)
        rows = [row for row in reader if row[column] not in ("", None)]
    values = np.array([float(row[column]) for row in rows])
    times = np.array([parse_time(row[time_column]) for row in rows]) if time_column else None
    return values, times


def redis_series(sensor: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The newest `count` readings of `sensor` stored by the web tier, and their times, from the
    Redis the web tier is configured with (one server, Sentinel or cluster: `webapp.make_redis`)."""
    from webapp import make_redis
    from webapp.config import Settings
    from webapp.storage import Store

    settings = Settings.from_env()
    stored = Store(make_redis(settings.storage), settings).read_range(sensor, "-", "+", count, latest=True)
    return np.array([value for _, value in stored]), np.array([stamp / 1000 for stamp, _ in stored])


def training_series(csv_path: str | None, value_column: str, sensor: str | None, readings: int,
                    seed: int) -> tuple[np.ndarray, np.ndarray | None, str]:
    """The readings to train on, their times (s) and their source label: the CSV column if
    `csv_path`, else the sensor's Redis history if `sensor`, else `readings` simulated with `seed`."""
    if csv_path:
        return *csv_series(csv_path, value_column), f"csv:{Path(csv_path).name}:{value_column}"
    if sensor:
        return *redis_series(sensor, readings), f"redis:{sensor}"
    return *simulator_series(readings, seed), f"simulator:seed={seed}"


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
