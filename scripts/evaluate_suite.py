"""The whole evaluation, one command: NAB's real and artificial series, SKAB temperature
channels (with SKAB anomaly-free), and simulator streams with injected faults, every one
replayed by `offline.evaluation.replay` with the same parameters; then the per-group tables of
``docs/detection.md`` (NAB's published detectors beside ours on nab-real, the z-score
baseline in every table) and the independence report (`offline.evaluation.independence`).

``python -m scripts.evaluate --suite --data-dir ../shared/eval/data --out out/eval --table docs/detection.md``;
``--groups nab-real`` (or ``python -m scripts.evaluate_suite --groups nab-real``) runs one group.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from offline.evaluation.suite import EXTRA
from offline.evaluation.suite import GROUPS
from offline.evaluation.suite import run_suite


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/eval/data"))
    parser.add_argument("--out", type=Path, default=Path("out/eval"))
    parser.add_argument("--table", type=Path, help="also write the markdown table here (whole suite only)")
    parser.add_argument("--groups", default=",".join(GROUPS), help=f"comma-separated, of {', '.join(GROUPS)}")
    parser.add_argument("--only", help="only the series whose name contains this")
    parser.add_argument("--cache", type=Path, help="keep and reuse the trained models here (iteration)")
    parser.add_argument("--drift-tau", type=float, help="override DRIFT_TAU (sampling periods; 0: off)")
    args = parser.parse_args(argv)
    groups = tuple(g.strip() for g in args.groups.split(",") if g.strip())
    unknown = set(groups) - set(GROUPS) - set(EXTRA)
    if unknown:
        parser.error(f"unknown group(s) {sorted(unknown)}; known: {', '.join(GROUPS + EXTRA)}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    overrides = {"drift_tau": args.drift_tau} if args.drift_tau is not None else None
    run_suite(args.data_dir, args.out, args.table, args.only, groups=groups, cache=args.cache, overrides=overrides)
    return 0


if __name__ == "__main__":
    sys.exit(main())
