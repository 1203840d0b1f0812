"""The built-in temperature simulator: a seeded, deterministic process with injectable faults.

`TemperatureSimulator.read(t)` is a pure function of the seed and the time `t` (seconds): a
daily-like sinusoid around a base level, slow drift and Gaussian noise, plus any `Fault`
active at `t`. The same instance can be read by several edge nodes, out of order, and two
reads of one instant agree, which keeps redundant nodes and training reproducible.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FAULT_KINDS = ("spike", "drift", "stuck", "noise", "dropout")


@dataclass(frozen=True)
class Fault:
    """A fault active in ``[start_s, start_s + duration_s)``.

    Parameters
    ----------
    kind
        ``spike`` adds `magnitude` to each reading; ``drift`` adds a ramp reaching `magnitude`
        at the end; ``stuck`` repeats the reading taken at `start_s`; ``noise`` multiplies the
        noise by `magnitude`; ``dropout`` returns no reading (None).
    start_s, duration_s
        When the fault starts and how long it lasts, in seconds.
    magnitude
        Size of the fault, in the sensor's units (a factor for ``noise``; unused otherwise).
    """

    kind: str
    start_s: float
    duration_s: float
    magnitude: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {FAULT_KINDS}, got {self.kind!r}")
        if self.duration_s <= 0:
            raise ValueError("duration_s must be positive")

    def active(self, t: float) -> bool:
        return self.start_s <= t < self.start_s + self.duration_s


class TemperatureSimulator:
    """A temperature sensor: base + amplitude·sin(2πt/period) + drift·t + noise, plus faults.

    Parameters
    ----------
    base
        Mean level (°C).
    amplitude
        Amplitude of the periodic component (°C).
    period_s
        Period of the periodic component (seconds).
    noise
        Standard deviation of the Gaussian measurement noise (°C).
    drift_per_hour
        Slow linear drift of the level (°C per hour), part of normal behaviour.
    seed
        The only source of randomness; the same seed gives the same readings.
    faults
        Faults to inject.

    Examples
    --------
    >>> sim = TemperatureSimulator(seed=1, faults=[Fault("spike", 60, 1, 15.0)])
    >>> sim.read(30.0) == TemperatureSimulator(seed=1).read(30.0)
    True
    >>> sim.read(60.0) - TemperatureSimulator(seed=1).read(60.0)
    15.0...
    >>> TemperatureSimulator(faults=[Fault("dropout", 0, 10)]).read(5.0) is None
    True
    """

    def __init__(
        self,
        base: float = 20.0,
        amplitude: float = 2.0,
        period_s: float = 3600.0,
        noise: float = 0.1,
        drift_per_hour: float = 0.0,
        seed: int = 0,
        faults: Sequence[Fault] = (),
    ):
        self.base = base
        self.amplitude = amplitude
        self.period_s = period_s
        self.noise = noise
        self.drift_per_hour = drift_per_hour
        self.seed = seed
        self.faults = tuple(faults)

    def clean(self, t: float) -> float:
        """The reading at `t` without any fault."""
        level = self.base + self.drift_per_hour * t / 3600.0
        return level + self.amplitude * math.sin(2 * math.pi * t / self.period_s) + self._noise(t)

    def read(self, t: float) -> float | None:
        """The reading at `t` seconds, or None when a dropout fault hides it."""
        value = self.clean(t)
        for fault in self.faults:
            if not fault.active(t):
                continue
            if fault.kind == "dropout":
                return None
            if fault.kind == "spike":
                value += fault.magnitude
            elif fault.kind == "drift":
                value += fault.magnitude * (t - fault.start_s) / fault.duration_s
            elif fault.kind == "stuck":
                value = self.clean(fault.start_s)
            elif fault.kind == "noise":
                value += (fault.magnitude - 1.0) * self._noise(t)
        return value

    def series(self, n: int, period_s: float = 1.0, start_s: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`n` readings every `period_s`: times (s), values (NaN for dropouts) and fault labels."""
        times = start_s + period_s * np.arange(n, dtype=np.float64)
        values = np.array([np.nan if (v := self.read(float(t))) is None else v for t in times])
        labels = np.array([any(f.active(float(t)) for f in self.faults) for t in times])
        return times, values, labels

    def _noise(self, t: float) -> float:
        # Seeded by (seed, millisecond) so a reading is a pure function of its instant.
        rng = np.random.default_rng((self.seed, int(round(t * 1000)) & 0xFFFFFFFFFFFF))
        return float(rng.normal(0.0, self.noise))
