"""How independently the detectors err, and how far that lets the vote go.

``python -m scripts.independence --eval out/eval`` reads an evaluation suite's per-series
outputs and prints the co-alarms, the calibration bound and a perfect detector in each seat
(`offline.evaluation.independence` explains each), writing ``independence.json`` and
``independence.png`` there; ``make evaluate`` runs it after the suite.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from offline.evaluation.independence import render
from offline.evaluation.independence import write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval", type=Path, default=Path("out/eval"), help="an evaluation suite's --out")
    args = parser.parse_args(argv)
    print(render(write(args.eval)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
