"""Replay a labelled series causally through every detector and the vote; score and plot them.

``python -m scripts.evaluate --data FILE.csv [--value-column C] [--windows WINDOWS.json --key KEY
| --label-column anomaly] [--baseline-rows N] --out DIR``. The first N rows (default: 15 % of
the series, at least 400) fit the sensor profile, the physical limits, the models and their
thresholds (`offline.training`, one parameter set for every series); every later row
is judged one at a time by the panel `/detectar` uses, with the in-process backend. Writes
``verdicts.csv``, ``summary.json`` and ``plot.png``. ``--suite`` runs the whole evaluation
(shared data and simulator faults) and writes the table of ``docs/detection.md``. The logic is
`offline.evaluation` (`replay`, `suite`); this is the command line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from offline.evaluation.replay import FALSE_ALARM_RATE
from offline.evaluation.replay import evaluate
from offline.evaluation.replay import load_series


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="CSV series to replay")
    parser.add_argument("--value-column", default="value")
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument("--label-column", help="column that is 1 on anomalous rows")
    labels.add_argument("--windows", type=Path, help="JSON of labelled windows (NAB's combined_windows.json)")
    parser.add_argument("--key", help="the series' key in --windows")
    parser.add_argument("--baseline-rows", type=int)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--suite", action="store_true", help="run the whole evaluation (see scripts.evaluate_suite)")
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/eval/data"))
    parser.add_argument("--table", type=Path, help="with --suite: also write the markdown table here")
    parser.add_argument("--only", help="with --suite: only the series whose name contains this")
    parser.add_argument("--cache", type=Path, help="with --suite: keep and reuse trained models here (iteration)")
    parser.add_argument("--groups",
                        help="with --suite: comma-separated groups (nab-real, nab-artificial, skab, simulator)")
    parser.add_argument("--false-alarm-rate", type=float, default=FALSE_ALARM_RATE,
                        help="each detector's calibrated false-alarm rate per window (one value for all series)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.suite:
        from offline.evaluation.suite import GROUPS
        from offline.evaluation.suite import run_suite

        groups = tuple(g.strip() for g in args.groups.split(",")) if args.groups else GROUPS
        if set(groups) - set(GROUPS):
            parser.error(f"--groups: known groups are {', '.join(GROUPS)}")
        run_suite(args.data_dir, args.out, args.table, args.only, args.false_alarm_rate, groups, args.cache)
        return 0
    if not args.data or (args.windows and not args.key):
        parser.error("--data is required, and --windows needs --key")
    times, values, windows = load_series(args.data, args.value_column, args.label_column, args.windows, args.key)
    summary = evaluate(times, values, windows, args.baseline_rows, args.out, args.key or args.data.name,
                       false_alarm_rate=args.false_alarm_rate)
    json.dump(summary["results"], sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
