"""What judging a reading reads and writes: the window of newest readings with the reference
level, each ballot's score and vote, the verdict."""
from __future__ import annotations

from collections.abc import Sequence

from webapp.detection.base import Window
from webapp.detection.vote import Decision
from webapp.storage.base import ScriptCall
from webapp.storage.base import StoreBase
from webapp.storage.base import _unavailable
from webapp.storage.base import executed


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
        pipe = self.client.pipeline(transaction=False)  # plain commands: no TimeSeries client built per read
        pipe.execute_command("TS.REVRANGE", self.keys.series(sensor, "readings"), "-", end, "COUNT", size)
        pipe.execute_command("GET", self.keys.series(sensor, "level"))  # not TS.GET: a plain string
        pipe.execute_command("HGETALL", self.keys.series(sensor, "peaks"))
        samples, level, peaks = executed(pipe)
        return self._judging_state(sensor, samples, level, peaks)  # peaks a dict: the client decodes responses

    def _read_written_call(self, sensor: str, size: int, write_id: str) -> ScriptCall:
        """The script that reads what `read_for_judging` does for the reading stored by the
        write `write_id`, in that write's round trip (`webapp.storage.ingest`)."""
        keys = [self.keys.series(sensor, part) for part in ("writes", "readings", "level", "peaks")]
        return self._read_written, keys, [write_id, size]

    def _read_written_reply(self, sensor: str, reply: list | None) -> tuple[Window, float | None, dict] | None:
        """`_read_written_call`'s reply as `read_for_judging` answers (None: nothing read)."""
        if not reply:
            return None
        samples, level, peaks = reply
        return self._judging_state(sensor, samples, level, dict(zip(peaks[::2], peaks[1::2])))

    @staticmethod
    def _judging_state(sensor: str, samples: list, level: str | None, peaks: dict) -> tuple[Window, float | None, dict]:
        # [[timestamp, value], ...] newest first: value a string, or a float once a TimeSeries
        # client registered its parser for TS.REVRANGE on this client.
        stamps, values = zip(*reversed(samples)) if samples else ((), ())
        window = Window(tuple(map(float, values)), tuple(map(int, stamps)), sensor)
        return window, None if level is None else float(level), peaks

    @_unavailable
    def record_decision(self, sensor: str, ts: int, decision: Decision, level: float | None = None,
                        peaks: dict[str, str] | None = None, events: Sequence[dict] = (),
                        also: Sequence[ScriptCall] = ()) -> list:
        """Store each ballot's score and vote and the verdict at the reading's timestamp, the
        sensor's reference level after it (`level`, when the panel follows one) and its
        detectors' recent peaks (`peaks`, replacing the stored ones), in one atomic script
        (`webapp.storage.scripts.RECORD_DECISION`). In the same round trip, after it: `events`
        appended to the event log (`record_events`) and the scripts `also` (an incident's,
        `webapp.alerting.Incidents.call`), whose replies are returned."""
        keys = [self.keys.series(sensor, "level"), self.keys.series(sensor, "peaks"),
                self.keys.series(sensor, "verdict")]
        fields = [item for pair in peaks.items() for item in pair] if peaks is not None else []
        args = [ts, self._retention_ms, "" if level is None else repr(float(level)), decision.level,
                len(fields) // 2, *self._labels(sensor).values(), *fields]
        for ballot in decision.ballots:
            if ballot.vote is None:
                continue
            keys += [self.keys.series(sensor, kind, ballot.detector) for kind in ("score", "vote")]
            args += [ballot.detector, repr(float(ballot.score)), int(ballot.vote)]
        calls = [(self._record_decision, keys, args)]
        if events:
            calls.append(self._events_call(events))
        return self._run_scripts([*calls, *also])[len(calls):]

    @_unavailable
    def latest_ballots(self, sensor: str) -> dict[str, dict]:
        """The newest stored score and vote of each detector of `sensor` (``TS.MGET`` by label
        on the server holding the sensor's slot, where all its series live)."""
        ballots: dict[str, dict] = {}
        for kind in ("score", "vote"):
            filters = [f"ns={self.keys.namespace}", f"sensor={sensor}", f"kind={kind}"]
            for entry in self._at(self.keys.series(sensor, "verdict"), "TS.MGET", "WITHLABELS", "FILTER", *filters):
                (_, (labels, ts, value)), = entry.items()
                if ts is not None:
                    ballot = ballots.setdefault(labels["detector"], {})
                    ballot[kind] = bool(value) if kind == "vote" else float(value)
                    ballot["timestamp"] = max(int(ts), ballot.get("timestamp", 0))
        return ballots
