"""Steady load for the fault tests: `/nuevo` with a fresh Idempotency-Key per reading, retried
with the same key until acknowledged, so every reading is acknowledged exactly once and the
stored series can be compared with what was acknowledged."""
from __future__ import annotations

import threading
import time
from collections import Counter

import requests


class SteadyLoad:
    """One client writing reading n (value n) of `sensor` about `rate` times a second."""

    def __init__(self, stack, sensor: str, rate: float = 10.0):
        self.stack, self.sensor, self.period = stack, sensor, 1.0 / rate
        self.acked: list[int] = []
        self.failures: list[tuple[float, str]] = []   # (monotonic time, status or error)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"load-{sensor}", daemon=True)

    def __enter__(self) -> SteadyLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            headers = {"X-API-Key": self.stack.api_key, "Idempotency-Key": f"{self.sensor}-{n}"}
            while True:   # until acknowledged, even after stop: no reading is left half-sent
                try:
                    response = requests.get(f"{self.stack.web}/nuevo?dato={n}&sensor={self.sensor}",
                                            headers=headers, verify=self.stack.cert, timeout=10)
                    if response.status_code in (200, 201):
                        self.acked.append(n)
                        break
                    self.failures.append((time.monotonic(), str(response.status_code)))
                except requests.RequestException as exc:
                    self.failures.append((time.monotonic(), type(exc).__name__))
                time.sleep(0.2)
            time.sleep(self.period)

    def stored(self) -> list[float]:
        response = self.stack.get(f"/listar?sensor={self.sensor}&count=1000")
        assert response.status_code == 200, response.text
        return [reading["value"] for reading in response.json()["readings"]]

    def check_nothing_lost_nothing_twice(self) -> str:
        """Asserts the stored series is exactly the acknowledged readings; returns a summary."""
        stored = self.stored()
        assert len(self.acked) < 1000, "the check reads at most 1000 readings"
        lost = sorted(set(self.acked) - set(stored))
        twice = len(stored) - len(set(stored))
        assert not lost, f"acknowledged but not stored: {lost[:10]}"
        assert twice == 0, f"{twice} readings stored twice"
        assert set(stored) == set(self.acked), "stored readings nobody acknowledged"
        kinds = Counter(kind for _, kind in self.failures)
        retried = ", ".join(f"{kind} x{n}" for kind, n in sorted(kinds.items())) or "none"
        return (f"{len(self.acked)} acknowledged, {len(stored)} stored, 0 lost, 0 twice; "
                f"failed attempts (each retried with its key): {retried}")
