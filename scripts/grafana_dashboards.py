"""Writes the Grafana dashboards under grafana/dashboards/ from one definition and the model manifest.

The definition is harness/grafana.py; ``--check`` only compares the committed files with it.
"""
from __future__ import annotations

import argparse
import sys

from harness.grafana import OUT_DIR
from harness.grafana import ROOT
from harness.grafana import render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed dashboard is out of date")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = OUT_DIR / name
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print(f"out of date: {', '.join(stale)} (run python -m scripts.grafana_dashboards)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
