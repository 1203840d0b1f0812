"""Sensor sources: where a node's reading comes from.

A source has ``read() -> float`` (raising `SourceError` when no value can be had: a dropout,
an unreadable device, a failing command). Specs, as given by ``--source``:

- ``sim[:key=value,...]`` — the built-in simulator (`edge.simulator`) with its options
  (process parameters and injectable faults: spike, drift, stuck-at, noise, dropout);
- ``csv:PATH[#COLUMN]`` — replay a CSV column (default ``value``, else the last column), looping;
- ``file:PATH`` — a device file such as 1-Wire ``/sys/bus/w1/devices/28-*/temperature``
  (millidegrees) or ``w1_slave`` (``t=23125``); plain numbers are read as they are;
- ``cmd:COMMAND`` — run a command (no shell) and read the first number it prints;
- ``const:VALUE`` — a fixed value (tests, drills).
"""
from __future__ import annotations

import csv
import itertools
import re
import shlex
import subprocess
import threading
import time
import zlib
from typing import Protocol

NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


class SourceError(RuntimeError):
    """Raised by ``read()`` when no value can be had this time (the node skips the round)."""


class Source(Protocol):
    def read(self) -> float: ...


class ConstantSource:
    """Always `value`.

    >>> ConstantSource(21.5).read()
    21.5
    """

    def __init__(self, value: float) -> None:
        self.value = value

    def read(self) -> float:
        return self.value


class CsvSource:
    """Replays one column of a CSV file in order, looping at the end; bad cells are skipped."""

    def __init__(self, path: str, column: str | None = None) -> None:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        if not rows:
            raise ValueError(f"{path}: no rows")
        column = column or ("value" if "value" in rows[0] else list(rows[0])[-1])
        values = [_number(row.get(column) or "") for row in rows]
        self.values = [v for v in values if v is not None]
        if not self.values:
            raise ValueError(f"{path}: no numeric values in column {column!r}")
        self._cycle = itertools.cycle(self.values)
        self._lock = threading.Lock()

    def read(self) -> float:
        with self._lock:
            return next(self._cycle)


class DeviceFileSource:
    """Reads a device file each time; 1-Wire ``temperature`` files hold millidegrees."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.scale = 0.001 if path.endswith("/temperature") else 1.0

    def read(self) -> float:
        try:
            with open(self.path, encoding="ascii", errors="replace") as handle:
                text = handle.read()
        except OSError as exc:
            raise SourceError(f"{self.path}: {exc}") from exc
        if "crc=" in text and "YES" not in text:
            raise SourceError(f"{self.path}: CRC check failed")
        w1_slave = re.search(r"t=(-?\d+)", text)
        if w1_slave:
            return int(w1_slave.group(1)) / 1000.0
        value = _number(text)
        if value is None:
            raise SourceError(f"{self.path}: no number in {text[:40]!r}")
        return value * self.scale


class CommandSource:
    """Runs `command` (split like a shell, run without one) and reads the first number printed."""

    def __init__(self, command: str, timeout_s: float = 0.5) -> None:
        self.argv = shlex.split(command)
        self.timeout_s = timeout_s

    def read(self) -> float:
        try:
            done = subprocess.run(self.argv, capture_output=True, text=True, timeout=self.timeout_s)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SourceError(f"{self.argv[0]}: {exc}") from exc
        value = _number(done.stdout) if done.returncode == 0 else None
        if value is None:
            raise SourceError(f"{self.argv[0]}: exit {done.returncode}, output {done.stdout[:40]!r}")
        return value


class SimulatedSource:
    """Reads `edge.simulator`'s process at the wall-clock time (seconds since the Unix epoch).

    All nodes of a group share the physical process (same parameters, same clock); each node's
    noise comes from its own seed. Fault times are relative to this source's creation.

    Parameters
    ----------
    simulator
        An object with ``read(t: float) -> float | None`` (None: a dropout).
    """

    def __init__(self, simulator, clock=time.time) -> None:
        self.simulator = simulator
        self.clock = clock

    def read(self) -> float:
        value = self.simulator.read(self.clock())
        if value is None:
            raise SourceError("simulated dropout")
        return float(value)


def simulated(options: dict[str, str], node_id: str, now: float | None = None) -> SimulatedSource:
    """A `SimulatedSource` from ``sim:`` options.

    Options: ``base``, ``amplitude``, ``period_s``, ``noise``, ``drift_per_hour``, ``seed``
    (default: derived from the node id) and ``faults=KIND:START:DURATION[:MAGNITUDE]|...``
    with START seconds after the node starts (kinds: spike, drift, stuck, noise, dropout).

    >>> source = simulated({"base": "50", "noise": "0", "amplitude": "0"}, "n1")
    >>> source.read()
    50.0
    >>> simulated({"faults": "dropout:0:60"}, "n1").read()
    Traceback (most recent call last):
    ...
    edge.sources.SourceError: simulated dropout
    """
    from edge.simulator import Fault
    from edge.simulator import TemperatureSimulator

    start = time.time() if now is None else now
    params = {k: float(v) for k, v in options.items() if k in ("base", "amplitude", "period_s", "noise",
                                                               "drift_per_hour")}
    unknown = set(options) - set(params) - {"seed", "faults"}
    if unknown:
        raise ValueError(f"unknown sim option(s): {sorted(unknown)}")
    faults = []
    for spec in filter(None, options.get("faults", "").split("|")):
        kind, begin, duration, *magnitude = spec.split(":")
        faults.append(Fault(kind, start + float(begin), float(duration), float(magnitude[0]) if magnitude else 0.0))
    seed = int(options["seed"]) if "seed" in options else zlib.crc32(node_id.encode())
    return SimulatedSource(TemperatureSimulator(seed=seed, faults=faults, **params))


def build_source(spec: str, node_id: str = "") -> Source:
    """The source a spec names (see the module docstring).

    >>> build_source("const:71.5").read()
    71.5
    >>> build_source("cmd:echo 23.25").read()
    23.25
    """
    kind, _, arg = spec.partition(":")
    if kind == "const":
        return ConstantSource(float(arg))
    if kind == "csv":
        path, _, column = arg.partition("#")
        return CsvSource(path, column or None)
    if kind == "file":
        return DeviceFileSource(arg)
    if kind == "cmd":
        return CommandSource(arg)
    if kind == "sim":
        options = dict(item.split("=", 1) for item in arg.split(",") if item)
        return simulated(options, node_id)
    raise ValueError(f"unknown source kind {kind!r} (sim, csv, file, cmd, const)")


def _number(text: str) -> float | None:
    match = NUMBER.search(text)
    return float(match.group(0)) if match else None
