"""Judging a sensor's newest reading: read its window, ask the panel, keep the decision.

Shared by ``/detectar`` and edge ingest, so both judge and store exactly alike.
"""
from __future__ import annotations

from webapp import metrics
from webapp.alerting import Incidents
from webapp.detection.base import Window
from webapp.detection.peaks import RecentPeaks
from webapp.detection.vote import Decision
from webapp.detection.vote import Panel
from webapp.storage import Store


def readings_judged(panel: Panel, window_size: int) -> int:
    """How many of a sensor's newest readings judging one reads (`judge_newest`)."""
    return max(window_size, panel.readings)


def judge_newest(store: Store, panel: Panel, sensor: str, timestamp: int, window_size: int,
                 incidents: Incidents | None = None, read: tuple | None = None) -> tuple[Window, Decision]:
    """Judge the window ending at the reading stored at `timestamp`, and record the decision.

    The panel gets the newest ``max(window_size, panel.readings)`` readings (the context
    detector's longer context, one ``TS.REVRANGE … COUNT`` read); the window returned and logged
    is the newest `window_size` of them. The learned detectors judge the window against the
    sensor's reference level, which then follows the reading unless it was critical
    (`webapp.detection.drift`); every detector but the physical rule must also beat its recent
    peak, kept in a small hash beside the sensor's series (`webapp.detection.peaks`), read with
    the window and written with the decision. Scores, votes and the verdict go to the sensor's
    series; a warning or critical verdict is also appended to the event log with every ballot,
    so ``/api/v1/anomalies`` can say why; `incidents` tracks the sensor's incident. Two round
    trips in all: one read, then one pipeline of scripts (the decision, the event, the incident);
    one when the read came with the write (`read`, ``Stored.judging``: ``/detectar``).
    """
    if read is None or read[0].timestamps[-1] != timestamp:
        read = store.read_for_judging(sensor, readings_judged(panel, window_size), end=timestamp)
    context, level, stored = read
    peaks = RecentPeaks.from_fields(stored, panel.span)
    decision = panel.judge(context, level, peaks)
    window = Window(context.values[-window_size:], context.timestamps[-window_size:], sensor)
    event = {"kind": "decision", "sensor": sensor, "timestamp": timestamp, "value": window.values[-1],
             "window": list(window.values), **decision.as_dict()}
    incident = [] if incidents is None else [incidents.call(sensor, decision.anomaly, decision.votes, timestamp, event)]
    replies = store.record_decision(sensor, timestamp, decision, panel.follow(level, context, decision),
                                    peaks=panel.remember(peaks, decision, timestamp).as_fields(),
                                    events=[event] if decision.verdict != "normal" else [], also=incident)
    metrics.VERDICTS.labels(decision.verdict).inc()
    for name in decision.degraded:
        metrics.ABSTENTIONS.labels(name).inc()
    if incidents is not None:
        incidents.settle(sensor, event, replies[0])
    return window, decision
