"""How independently the detectors err, and how far that lets the vote go.

An M-of-N vote cuts false alarms only as far as the detectors' false alarms are independent:
two detectors that always alarm together count as one. This reads an evaluation suite's
per-series outputs (``verdicts.csv`` and ``summary.json`` under ``--eval``) and reports

- **co-alarms**: on readings outside every labelled window, how often detector B votes when
  detector A does, at the calibrated thresholds (1.0 on the diagonal; about B's own alarm
  rate when the two err independently);
- **calibration bound**: the best ratio of the vote's false-alarm incidents to the best single
  detector's at the vote's recall over a grid of per-detector threshold factors, among the
  points that catch at least as many windows as the calibrated vote; the factors are chosen
  on these very labels, an oracle no deployment has;
- **a perfect detector in each seat**: that ratio when one detector's votes are replaced by
  the labels themselves (votes on every labelled reading, never elsewhere).

`write` puts ``independence.json`` and ``independence.png`` beside the suite's outputs. The
command line is scripts/independence.py; the suite (`offline.evaluation.suite`) runs it too.
"""
from __future__ import annotations

import csv
import itertools
import json
import sys
from datetime import datetime
from pathlib import Path

import numpy as np

from offline.evaluation.curves import at_recall
from offline.evaluation.curves import sum_curves
from offline.evaluation.replay import DETECTORS
from offline.evaluation.replay import WINDOW

GRID = (0.75, 1.0, 1.25, 1.5, 2.0, 3.0)  # per-detector threshold factors of the calibration bound
REQUIRED = 3  # the vote the evaluation replays (VOTE_REQUIRED's default)


class Series:
    """One replayed series: its judged readings, labelled windows and each detector's score
    over what it had to beat, its threshold or its recent peak (a vote is a ratio above 1; an
    abstention is NaN and never votes)."""

    def __init__(self, stamps: np.ndarray, windows: list[tuple[float, float]], ratios: np.ndarray,
                 vote: np.ndarray, sweep: dict[str, list[list]] | None = None):
        self.stamps, self.windows, self.ratios, self.vote = stamps, windows, ratios, vote
        self.sweep = sweep or {}  # each detector alone, from `offline.evaluation.replay.sweep`
        self.spans = [(int(np.searchsorted(stamps, s, "left")), int(np.searchsorted(stamps, e, "right")))
                      for s, e in windows]
        self.labelled = np.zeros(len(stamps), dtype=bool)
        for a, b in self.spans:
            self.labelled[a:b] = True

    @classmethod
    def read(cls, folder: Path) -> Series:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        with open(folder / "verdicts.csv", newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        stamps = np.array([datetime.fromisoformat(r["timestamp"]).timestamp() for r in rows])
        ratios = np.full((len(rows), len(DETECTORS)), np.nan)
        for j, d in enumerate(DETECTORS):
            threshold = summary["thresholds"].get(d)
            if threshold and f"{d}_score" in rows[0]:
                scores = np.array([_number(r[f"{d}_score"]) for r in rows])
                bars = np.array([_number(r.get(f"{d}_bar")) for r in rows])  # its recent peak, to beat
                ratios[:, j] = scores / np.fmax(threshold, bars)
        vote = np.array([r["verdict"] == "critical" for r in rows])
        return cls(stamps, [tuple(w) for w in summary["windows"]], ratios, vote, summary["sweep"])

    def count(self, alarms: np.ndarray) -> tuple[int, int]:
        """Windows caught and false-alarm incidents, as `score_alarms` counts them."""
        caught = sum(bool(alarms[a:b].any()) for a, b in self.spans)
        rows = np.flatnonzero(alarms)
        if not rows.size:
            return caught, 0
        openings = rows[np.r_[True, np.diff(rows) > WINDOW]]
        return caught, int((~self.labelled[openings]).sum())


class GridVotes:
    """Every series' readings where a vote at some point of the grid could alarm (`REQUIRED`
    ratios above its smallest factor), laid end to end with more than `WINDOW` readings between
    series so that no incident spans two: the vote at one grid point is counted over the whole
    suite in one pass, as `Series.count` counts it series by series."""

    def __init__(self, series: list[Series]):
        rows, ratios, labelled, spans, offset = [], [], [], [], 0
        for s in series:
            with np.errstate(invalid="ignore"):
                keep = np.flatnonzero((s.ratios > min(GRID)).sum(axis=1) >= REQUIRED)
            rows.append(keep + offset)
            ratios.append(s.ratios[keep])
            labelled.append(s.labelled[keep])
            spans += [(a + offset, b + offset) for a, b in s.spans]
            offset += len(s.stamps) + WINDOW + 1
        self.rows = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
        self.ratios = np.vstack(ratios) if ratios else np.empty((0, len(DETECTORS)))
        self.labelled = np.concatenate(labelled) if labelled else np.empty(0, dtype=bool)
        self.starts, self.ends = (np.array(spans, dtype=np.int64).T if spans else (np.empty(0), np.empty(0)))

    def count(self, factors) -> tuple[int, int]:
        """Windows caught and false-alarm incidents of the vote with thresholds times `factors`."""
        hit = votes(self.ratios, factors).sum(axis=1) >= REQUIRED
        rows, labelled = self.rows[hit], self.labelled[hit]
        if not rows.size:
            return 0, 0
        caught = int((np.searchsorted(rows, self.ends) > np.searchsorted(rows, self.starts)).sum())
        opening = np.r_[True, np.diff(rows) > WINDOW]
        return caught, int((~labelled[opening]).sum())


def _number(text: str | None) -> float:
    return float(text) if text not in (None, "", "None") else np.nan


def votes(ratios: np.ndarray, factors=None) -> np.ndarray:
    """Per reading and detector: does its score exceed its threshold (times `factors`)?"""
    with np.errstate(invalid="ignore"):
        return ratios > (1.0 if factors is None else np.asarray(factors))


def total(series: list[Series], alarms_of) -> tuple[int, int]:
    """Caught and false alarms summed over every series, `alarms_of(series)` giving its alarms."""
    counts = [s.count(alarms_of(s)) for s in series]
    return sum(c for c, _ in counts), sum(f for _, f in counts)


def ratio(caught_false: tuple[int, int], singles: dict) -> dict:
    """A vote's (caught, false alarms) against the best single detector at its recall."""
    caught, false = caught_false
    matched = {d: m for d, curve in singles.items() if (m := at_recall(curve, caught))}
    best = min(matched, key=lambda d: matched[d]["false_alarms"], default=None)
    best_false = matched[best]["false_alarms"] if best else None
    return {"caught": caught, "false_alarms": false, "best": best, "best_false_alarms": best_false,
            "ratio": round(false / best_false, 3) if best_false else None}


def co_alarms(series: list[Series]) -> np.ndarray:
    """``m[a, b]``: the share of readings outside every window where `a` votes that `b` votes too."""
    normal = np.concatenate([votes(s.ratios)[~s.labelled] for s in series])
    both = normal.T.astype(np.int64) @ normal.astype(np.int64)
    alone = np.maximum(np.diag(both), 1)
    return both / alone[:, None]


def report(folder: Path, progress=None) -> dict:
    """Everything the module docstring lists, for the suite under `folder`."""
    series = [Series.read(p.parent) for p in sorted(folder.glob("*/verdicts.csv"))]
    singles = sum_curves(s.sweep for s in series)
    vote = ratio(total(series, lambda s: s.vote), singles)
    # A detector that never scored (abstaining, or off the panel, in every series) gets one factor:
    # with six detectors the whole grid is 46,656 points.
    scored = [any(np.isfinite(s.ratios[:, j]).any() for s in series) for j in range(len(DETECTORS))]
    grid = list(itertools.product(*(GRID if any_score else (1.0,) for any_score in scored)))
    suite, best = GridVotes(series), None
    for factors in (progress(grid) if progress else grid):
        point = ratio(suite.count(factors), singles)
        if point["caught"] < vote["caught"] or point["ratio"] is None:
            continue  # a quieter vote that also misses more proves nothing
        if best is None or point["ratio"] < best["ratio"]:
            best = {**point, "factors": dict(zip(DETECTORS, factors))}
    perfect = {}
    for j, d in enumerate(DETECTORS):
        def seat(s, j=j):
            v = votes(s.ratios)
            v[:, j] = s.labelled
            return v.sum(axis=1) >= REQUIRED
        perfect[d] = ratio(total(series, seat), singles)
    return {"series": len(series), "vote": vote, "co_alarms": {a: dict(zip(DETECTORS, np.round(row, 3).tolist()))
                                                               for a, row in zip(DETECTORS, co_alarms(series))},
            "calibration_bound": best, "perfect_in_seat": perfect,
            "curves": singles}


def render(found: dict) -> str:
    """The markdown of the report, for the docs table."""
    lines = ["**How independently the detectors err** (readings outside every labelled window: "
             "when the row's detector votes, how often each column's detector votes too)", "",
             "| votes → also votes | " + " | ".join(DETECTORS) + " |", "|---" * (len(DETECTORS) + 1) + "|"]
    for a in DETECTORS:
        lines.append(f"| {a} | " + " | ".join(f"{found['co_alarms'][a][b]:.2f}" for b in DETECTORS) + " |")
    v, bound = found["vote"], found["calibration_bound"]
    lines += ["", f"- The vote: {v['caught']} windows caught, {v['false_alarms']} false-alarm incidents; "
              f"best single detector at that recall: {v['best']} with {v['best_false_alarms']} (ratio {v['ratio']})."]
    if bound:
        factors = ", ".join(f"{d} ×{f:g}" for d, f in bound["factors"].items())
        lines.append(f"- Calibration bound (each detector its own threshold factor, chosen on these labels, "
                     f"catching at least the vote's {v['caught']} windows): "
                     f"best ratio {bound['ratio']} ({factors}: {bound['caught']} caught, "
                     f"{bound['false_alarms']} false alarms, best single {bound['best_false_alarms']}).")
    for d, p in found["perfect_in_seat"].items():
        lines.append(f"- {d} replaced by the labels themselves: {p['caught']} caught, {p['false_alarms']} false "
                     f"alarms, ratio {p['ratio']}.")
    return "\n".join(lines) + "\n"


def plot(found: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (heat, curve) = plt.subplots(1, 2, figsize=(13, 5), width_ratios=[1, 1.3])
    m = np.array([[found["co_alarms"][a][b] for b in DETECTORS] for a in DETECTORS])
    heat.imshow(m, vmin=0, vmax=1, cmap="Reds")
    for (i, j), value in np.ndenumerate(m):
        heat.text(j, i, f"{value:.2f}", ha="center", va="center", color="white" if value > 0.6 else "black")
    heat.set_xticks(range(len(DETECTORS)), DETECTORS, rotation=20)
    heat.set_yticks(range(len(DETECTORS)), DETECTORS)
    heat.set_title("P(column votes | row votes), normal readings")
    for d, points in found["curves"].items():  # in factor order: looser thresholds can merge incidents
        shown = [p for p in points if p[2] > 0]
        curve.plot([p[2] for p in shown], [p[1] for p in shown], ".-", ms=3, lw=0.8, label=d)
    v = found["vote"]
    curve.plot([v["false_alarms"]], [v["caught"]], "r*", ms=14, label=f"vote ({REQUIRED} of {len(DETECTORS)})")
    if v["best_false_alarms"]:
        curve.plot([v["best_false_alarms"] / 2], [v["caught"]], "*", ms=14, mfc="none", mec="r",
                   label="aim: half the best single's false alarms at the vote's recall")
    curve.set_xscale("log")
    curve.set_xlabel("false-alarm incidents (each detector's threshold ×0.25 … ×4)")
    curve.set_ylabel("labelled windows caught")
    curve.set_title("each detector alone vs the vote, all series")
    curve.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write(folder: Path) -> dict:
    """The report of the suite under `folder`, with ``independence.json`` and ``.png`` written there."""
    from tqdm import tqdm

    found = report(folder, lambda grid: tqdm(grid, desc="calibration bound", unit="point", file=sys.stderr))
    (folder / "independence.json").write_text(json.dumps(found, indent=1) + "\n", encoding="utf-8")
    plot(found, folder / "independence.png")
    return found
