"""Confirmed alarms (webapp.detection.confirm): a quorum is critical only when the reading before
it already drew all but one of its votes; an unconfirmed quorum is a warning that teaches the
reference level and the peaks nothing, and a judge that remembers nothing confirms every quorum."""
from __future__ import annotations

from tests.conftest import WARM_UP_READINGS
from webapp.detection.base import Detector
from webapp.detection.base import Window
from webapp.detection.confirm import confirmed
from webapp.detection.peaks import WARMUP_S
from webapp.detection.peaks import RecentPeaks
from webapp.detection.vote import Panel
from webapp.detection.vote import Voter


class Scripted(Detector):
    """Scores the reading whose value is i with script[i]."""

    def __init__(self, name: str, script: list[float]):
        self.name, self.script = name, script

    def score_one(self, window: Window) -> float:
        return self.script[int(window.values[-1])]


def panel_of(scripts: dict[str, list[float]], required: int = 3) -> Panel:
    return Panel([Voter(Scripted(name, script), 1.0) for name, script in scripts.items()], required=required)


def run(panel: Panel, readings: int, peaks: RecentPeaks | None = None, start: int = 0) -> list:
    """Judge readings 0, 1, … in turn, the recent peaks (and who voted) carried between them."""
    decisions = []
    for i in range(readings):
        decision = panel.judge(Window((float(i),), (start + i * 1000,)), peaks=peaks)
        peaks = panel.remember(peaks, decision, start + i * 1000)
        decisions.append(decision)
    return decisions


def test_a_quorum_out_of_nowhere_waits_one_reading_for_its_confirmation():
    """Three detectors jump together on reading 1 and stay: a warning marked unconfirmed, then
    critical from reading 2 on, confirmed by reading 1's votes."""
    decisions = run(panel_of({name: [0.2, 2.0, 2.0, 2.0] for name in ("a", "b", "c")}), 4)
    assert [d.verdict for d in decisions] == ["normal", "warning", "critical", "critical"]
    assert decisions[1].unconfirmed and decisions[1].agreed and decisions[1].votes == 3
    assert decisions[1].as_dict()["unconfirmed"] is True and decisions[2].as_dict()["unconfirmed"] is False


def test_a_one_reading_quorum_never_alarms():
    decisions = run(panel_of({name: [0.2, 2.0, 0.2, 0.2] for name in ("a", "b", "c")}), 4)
    assert [d.verdict for d in decisions] == ["normal", "warning", "normal", "normal"]


def test_a_quorum_after_building_evidence_is_critical_at_once():
    """Two detectors vote on reading 1 (all but one of the quorum), the third joins on reading 2."""
    decisions = run(panel_of({"a": [0.2, 2.0, 2.0], "b": [0.2, 2.0, 2.0], "c": [0.2, 0.2, 2.0]}), 3)
    assert [d.verdict for d in decisions] == ["normal", "warning", "critical"]
    assert not decisions[2].unconfirmed
    short = run(panel_of({"a": [0.2, 2.0, 2.0], "b": [0.2, 0.2, 2.0], "c": [0.2, 0.2, 2.0]}), 3)
    assert short[2].verdict == "warning" and short[2].unconfirmed  # one vote before: one short of M - 1


def test_confirmation_scales_with_the_quorum():
    assert confirmed({"a"}, required=2) and not confirmed(set(), required=2)
    assert confirmed({"a", "b", "c"}, required=4) and not confirmed({"a", "b"}, required=4)
    assert confirmed(None, required=3)


def test_a_judge_that_remembers_nothing_confirms_every_quorum():
    panel = panel_of({name: [0.2, 2.0] for name in ("a", "b", "c")})
    assert panel.judge(Window((1.0,), (0,))).verdict == "critical"


def test_an_unconfirmed_quorum_teaches_the_peaks_nothing():
    """After a day of judging the peaks apply; an unconfirmed quorum's scores never raise them,
    so the fault is not harder to see on its next reading."""
    day = WARMUP_S * 1000
    panel = panel_of({name: [0.5, 0.5, 3.0, 3.0] for name in ("a", "b", "c")})
    peaks = RecentPeaks(20, since=0)
    decisions, bars = [], []
    for i in range(4):
        decision = panel.judge(Window((float(i),), (day + i,)), peaks=peaks)
        peaks = panel.remember(peaks, decision, day + i)
        decisions.append(decision)
        bars.append(peaks.bar("a", day + i))
    assert [d.verdict for d in decisions] == ["normal", "normal", "warning", "critical"]
    assert bars[2] == bars[1] == 0.5


def test_detectar_says_a_sudden_quorum_is_unconfirmed_then_critical(client, settings):
    """/detectar's path: who voted on the previous reading comes back from Redis with the window,
    on any worker; the HTML page says why a quorum stayed a warning."""
    for i in range(WARM_UP_READINGS):
        client.get(f"/detectar?dato={20 + 0.1 * (i % 3):.1f}&sensor=kiln")
    first = client.get("/detectar?dato=900&sensor=kiln").json
    assert first["quorum"]["votes"] >= first["quorum"]["required"]
    assert first["verdict"] == "warning" and first["unconfirmed"] is True
    second = client.get("/detectar?dato=900&sensor=kiln").json
    assert second["verdict"] == "critical" and second["unconfirmed"] is False
    for i in range(WARM_UP_READINGS):
        client.get(f"/detectar?dato={20 + 0.1 * (i % 3):.1f}&sensor=oven")
    page = client.get("/detectar?dato=900&sensor=oven", headers={"Accept": "text/html"}).text
    assert 'class="verdict warning"' in page and "not yet confirmed" in page
