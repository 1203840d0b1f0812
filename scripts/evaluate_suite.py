"""The whole evaluation, one command: NAB artificial series, SKAB temperature channels (and
SKAB anomaly-free), and simulator streams with injected faults, every one replayed by
`scripts.evaluate` with the same parameters; then the per-group table of ``docs/detection.md``
and the independence report (`scripts.independence`).

``python -m scripts.evaluate --suite --data-dir ../shared/eval/data --out out/eval --table out/eval/table.md``
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from scripts.evaluate import DETECTORS
from scripts.evaluate import WINDOW
from scripts.evaluate import evaluate
from scripts.evaluate import load_series

FAULTS = {  # kind: (magnitude, duration_s), each injected three times in a 2-hour stream
    "spike": (3.0, 3),
    "drift": (3.0, 600),
    "stuck": (0.0, 300),
    "noise": (10.0, 120),
    "dropout": (0.0, 60),
}
SKAB_CHANNELS = ("Temperature", "Thermocouple")


def simulator_stream(kind: str, seed: int) -> tuple[np.ndarray, np.ndarray, list[tuple[float, float]]]:
    """Two hours at 1 Hz of the simulator (10-minute cycle) with three faults of `kind`."""
    from edge.simulator import Fault
    from edge.simulator import TemperatureSimulator

    magnitude, duration = FAULTS[kind]
    starts = (2400.0, 4200.0, 6000.0)
    faults = [Fault(kind, s, duration, magnitude) for s in starts]
    times, values, _ = TemperatureSimulator(period_s=600.0, seed=seed, faults=faults).series(7200)
    # A faulty reading stays in the judged window for WINDOW - 1 more readings.
    epoch = 1.7e9  # 2023-11-14, so timestamps look like real ones
    windows = [(epoch + s, epoch + s + duration - 1 + WINDOW) for s in starts]
    return times + epoch, values, windows


def series_list(data_dir: Path):
    """(group, name, loader) of every series of the evaluation."""
    nab = data_dir / "nab-artificial"
    for path in sorted(nab.glob("artificial*/*.csv")):
        key = f"{path.parent.name}/{path.name}"
        group = "NAB with anomalies" if "With" in path.parent.name else "NAB without anomalies"
        yield group, key, lambda p=path, k=key: load_series(p, "value", None, nab / "combined_windows.json", k)
    skab = data_dir / "skab"
    for path in sorted(skab.glob("*/*.csv"), key=lambda p: (p.parent.name, int(p.stem) if p.stem.isdigit() else 0)):
        group = "SKAB anomaly-free" if path.parent.name == "anomaly-free" else "SKAB faults"
        for channel in SKAB_CHANNELS:
            name = f"skab/{path.parent.name}/{path.name}:{channel}"
            yield group, name, lambda p=path, c=channel: load_series(p, c, "anomaly", None, None)
    for i, kind in enumerate(FAULTS):
        yield f"simulator {kind}", f"simulator/{kind}", lambda k=kind, s=100 + i: simulator_stream(k, s)


def run_suite(data_dir: Path, out: Path, table: Path | None = None, only: str | None = None,
              false_alarm_rate: float = 0.002) -> dict:
    """Evaluate every series; write ``suite.json`` and the markdown table."""
    from tqdm import tqdm

    from scripts import independence  # imported here: it imports this module's scoring helpers

    out.mkdir(parents=True, exist_ok=True)
    everything = [s for s in series_list(data_dir) if not only or only in s[1]]
    summaries = []
    started = time.monotonic()
    for group, name, load in tqdm(everything, desc="evaluating", unit="series", file=sys.stderr):
        times, values, windows = load()
        folder = out / name.replace("/", "__").replace(":", "__")
        summary = evaluate(times, values, windows, None, folder, name, false_alarm_rate=false_alarm_rate)
        summary["group"] = group
        summaries.append(summary)
    totals = aggregate(summaries)
    body = {"series": summaries, "groups": totals, "elapsed_s": round(time.monotonic() - started)}
    (out / "suite.json").write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
    markdown = render(totals)
    if not only:  # how independently the detectors err, over the whole suite
        markdown += "\n" + independence.render(independence.write(out))
    (out / "table.md").write_text(markdown, encoding="utf-8")
    if table:
        write_table(table, markdown)
    print(markdown)
    return body


START, END = "<!-- evaluation-table:start -->", "<!-- evaluation-table:end -->"


def write_table(path: Path, markdown: str) -> None:
    """Put the table between the markers of `path` (a docs page), or write it whole."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = f"{head}{START}\n{markdown}\n{END}{rest.split(END, 1)[1]}"
    else:
        text = markdown
    path.write_text(text, encoding="utf-8")


def aggregate(summaries: list[dict]) -> dict:
    """Per group and overall: windows caught, false-alarm incidents, days, mean delay, NAB."""
    groups: dict[str, dict] = {}
    for summary in summaries:
        for key in (summary["group"], "all series"):
            group = groups.setdefault(key, {})
            for detector, r in summary["results"].items():
                g = group.setdefault(detector, {"windows": 0, "caught": 0, "false_alarms": 0, "days": 0.0,
                                                "delays": [], "nab": []})
                g["windows"] += r["windows"]
                g["caught"] += r["caught"]
                g["false_alarms"] += r["false_alarms"]
                g["days"] += r["days"]
                if r["mean_delay_s"] is not None:
                    g["delays"].append(r["mean_delay_s"])
                if r["nab_standard"] is not None:
                    g["nab"].append(r["nab_standard"])
    for key, group in groups.items():
        curves = sum_curves(s.get("sweep", {}) for s in summaries if key in (s["group"], "all series"))
        for g in group.values():
            g["false_alarms_per_day"] = round(g["false_alarms"] / g["days"], 2) if g["days"] else 0.0
            g["mean_delay_s"] = round(float(np.mean(g.pop("delays"))), 1) if g["delays"] else None
            nab = g.pop("nab")
            g["nab_standard"] = round(float(np.mean(nab)), 1) if nab else None
        for detector, curve in curves.items():
            group[detector]["at_vote_recall"] = at_recall(curve, group["vote"]["caught"])
    return groups


def sum_curves(sweeps) -> dict[str, list[list]]:
    """Per detector, several series' sweeps added up point by point: [factor, caught, false alarms].

    >>> sum_curves([{"lstm": [[1.0, 2, 5]]}, {"lstm": [[1.0, 1, 3]]}])
    {'lstm': [[1.0, 3, 8]]}
    """
    summed: dict[str, list[list]] = {}
    for sweep in sweeps:
        for detector, curve in sweep.items():
            total = summed.setdefault(detector, [[factor, 0, 0] for factor, _, _ in curve])
            for point, (_, caught, false) in zip(total, curve):
                point[1] += caught
                point[2] += false
    return summed


def at_recall(curve: list[list], caught: int) -> dict | None:
    """The strictest point of a detector's threshold sweep that still catches `caught`
    windows: that detector at the vote's recall (None: no threshold of the sweep gets there).

    >>> at_recall([[0.5, 9, 40], [1.0, 7, 12], [2.0, 5, 3]], caught=6)
    {'factor': 1.0, 'caught': 7, 'false_alarms': 12}
    """
    able = [p for p in curve if p[1] >= caught]
    if not able:
        return None
    factor, got, false = max(able, key=lambda p: p[0])
    return {"factor": factor, "caught": got, "false_alarms": false}


def verdict(group: dict) -> dict:
    """The target: the vote's false alarms at most a third of the best single detector's when
    both catch as many windows (that detector's threshold moved to the vote's recall)."""
    vote = group["vote"]
    matched = {d: group[d]["at_vote_recall"] for d in DETECTORS if group[d].get("at_vote_recall")}
    if not vote["windows"] or not matched:  # no recall to match, or no detector reaches the vote's
        return {"best": None, "ratio": None, "met": True}
    best = min(matched, key=lambda d: matched[d]["false_alarms"])
    best_false = matched[best]["false_alarms"]
    ratio = vote["false_alarms"] / best_false if best_false else (0.0 if not vote["false_alarms"] else None)
    return {"best": best, "best_false_alarms": best_false, "ratio": None if ratio is None else round(ratio, 3),
            "met": ratio is not None and ratio <= 1 / 3 and vote["caught"] > 0}  # matching no recall proves nothing


def render(groups: dict) -> str:
    lines = []
    order = sorted(groups, key=lambda k: (k == "all series", k))
    for name in order:
        lines += [f"**{name}**", "",
                  "| detector | caught / windows | false-alarm incidents | per day | mean delay (s) | NAB standard "
                  "| false alarms at the vote's recall (threshold ×) |",
                  "|---|---|---|---|---|---|---|"]
        for detector in (*DETECTORS, "vote"):
            g = groups[name][detector]
            label = "**vote (3 of 4)**" if detector == "vote" else detector
            matched = g.get("at_vote_recall")
            at_vote = f"{matched['false_alarms']} (×{matched['factor']:g})" if matched else ("–" if detector == "vote" else "cannot")
            lines.append(f"| {label} | {g['caught']} / {g['windows']} | {g['false_alarms']} | "
                         f"{g['false_alarms_per_day']} | {g['mean_delay_s'] if g['mean_delay_s'] is not None else '–'} | "
                         f"{g['nab_standard'] if g['nab_standard'] is not None else '–'} | {at_vote} |")
        target = verdict(groups[name])
        if target["best"]:
            lines.append(f"\nAt the vote's recall the best single detector is **{target['best']}** with "
                         f"{target['best_false_alarms']} false-alarm incidents; the vote has "
                         f"{groups[name]['vote']['false_alarms']} (ratio {target['ratio'] if target['ratio'] is not None else '∞'}, "
                         f"target ≤ 0.33: **{'met' if target['met'] else 'not met'}**"
                         f"{'' if groups[name]['vote']['caught'] else ', the vote catching none'}).")
        lines.append("")
    return "\n".join(lines)
