"""What judging a reading reads and writes: the window of newest readings with the reference
level, each ballot's score and vote, the verdict."""
from __future__ import annotations

from webapp.detection.base import Window
from webapp.detection.vote import Decision
from webapp.storage.base import StoreBase
from webapp.storage.base import _unavailable


class JudgingState(StoreBase):
    """The judging side of `webapp.storage.Store`."""

    @_unavailable
    def is_judged(self, sensor: str, ts: int) -> bool:
        """Whether the reading of `sensor` at `ts` has a stored verdict."""
        key = self.keys.series(sensor, "verdict")
        return bool(self.client.exists(key)) and bool(self.client.ts().range(key, ts, ts))

    def read_judging_state(self, sensor: str, size: int, end: int | str = "+") -> tuple[Window, float | None]:
        """The newest `size` readings of `sensor` up to `end`, oldest first, and the sensor's
        reference level (None before its first decision: `webapp.detection.drift`)."""
        window, level, _ = self.read_for_judging(sensor, size, end)
        return window, level

    @_unavailable
    def read_for_judging(self, sensor: str, size: int, end: int | str = "+") -> tuple[Window, float | None, dict]:
        """What judging the reading at `end` needs, in one round trip: the newest `size` readings
        (one ``TS.REVRANGE … COUNT``, whose cost does not grow with the series' history), the
        reference level and the detectors' recent peaks as stored (`webapp.detection.peaks`)."""
        pipe = self.client.ts().pipeline(transaction=False)
        pipe.revrange(self.keys.series(sensor, "readings"), "-", end, count=size)
        pipe.execute_command("GET", self.keys.series(sensor, "level"))  # not TS.GET: a plain string
        pipe.execute_command("HGETALL", self.keys.series(sensor, "peaks"))
        samples, level, peaks = pipe.execute()
        samples.reverse()
        window = Window(tuple(float(v) for _, v in samples), tuple(int(t) for t, _ in samples), sensor)
        return window, None if level is None else float(level), peaks  # a dict: the client decodes responses

    @_unavailable
    def record_decision(self, sensor: str, ts: int, decision: Decision, level: float | None = None,
                        peaks: dict[str, str] | None = None) -> None:
        """Store each ballot's score and vote and the verdict at the reading's timestamp, the
        sensor's reference level after it (`level`, when the panel follows one) and its
        detectors' recent peaks (`peaks`, replacing the stored ones), in one transaction."""
        ts_pipe = self.client.ts().pipeline(transaction=True)
        retention = self._retention_ms
        if level is not None:
            ts_pipe.set(self.keys.series(sensor, "level"), repr(float(level)), px=retention)
        if peaks is not None:
            key = self.keys.series(sensor, "peaks")
            ts_pipe.execute_command("DEL", key)  # the plain commands: TimeSeries' pipeline names its own delete
            ts_pipe.execute_command("HSET", key, *(item for pair in peaks.items() for item in pair))
            ts_pipe.execute_command("PEXPIRE", key, retention)
        for ballot in decision.ballots:
            if ballot.vote is None:
                continue
            labels = self._labels(sensor, detector=ballot.detector)
            ts_pipe.add(self.keys.series(sensor, "score", ballot.detector), ts, ballot.score,
                        retention_msecs=retention, on_duplicate="last", labels={**labels, "kind": "score"})
            ts_pipe.add(self.keys.series(sensor, "vote", ballot.detector), ts, int(ballot.vote),
                        retention_msecs=retention, on_duplicate="last", labels={**labels, "kind": "vote"})
        ts_pipe.add(self.keys.series(sensor, "verdict"), ts, decision.level, retention_msecs=retention,
                    on_duplicate="last", labels=self._labels(sensor, kind="verdict"))
        ts_pipe.execute()

    @_unavailable
    def latest_ballots(self, sensor: str) -> dict[str, dict]:
        """The newest stored score and vote of each detector of `sensor`."""
        ballots: dict[str, dict] = {}
        for kind in ("score", "vote"):
            filters = [f"ns={self.keys.namespace}", f"sensor={sensor}", f"kind={kind}"]
            for entry in self.client.ts().mget(filters, with_labels=True):
                (_, (labels, ts, value)), = entry.items()
                if ts is not None:
                    ballot = ballots.setdefault(labels["detector"], {})
                    ballot[kind] = bool(value) if kind == "vote" else float(value)
                    ballot["timestamp"] = max(int(ts), ballot.get("timestamp", 0))
        return ballots
