"""Benchmarks of the web tier against a fresh local stack: ``make bench`` (``python -m scripts.bench``).

Prints, from one run on one machine (compare the ratios, not absolute figures, across
machines): ``/nuevo`` throughput and p50/p99 under concurrent clients (wrk), ``/detectar``
p50/p99 at a fixed request rate (an open-loop paced client, so a slow answer cannot hide the
requests queued behind it), ``/detectar`` p99 with 1,000 vs 1,000,000 stored readings, and raw
single-client ``TS.ADD`` throughput from ``redis-benchmark`` on the same server.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from harness.bench import measure
from harness.bench import report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each measurement")
    parser.add_argument("--rate", type=float, default=200.0, help="/detectar request rate")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections for /nuevo")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--history", type=int, default=1_000_000, help="readings stored for the history test")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        print("wrk is missing: apt-get install -y wrk (make bench does this)", file=sys.stderr)
        return 2
    results = measure(args.seconds, args.rate, args.connections, args.workers, args.history)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
