"""Soak test: ``make soak MINUTES=N`` (``python -m scripts.soak --minutes N``).

Starts a private local stack on free ports (every service of the launcher: edge nodes too
once the launcher has them, at a 1 s period) and drives steady open-loop API load, by default
100 requests/s mixed ``/detectar`` (40 %), ``/listar`` (30 %) and edge-style aggregate ingest
(30 %, ``POST /api/v1/readings`` with increasing rounds). Every minute it prints requests,
errors and p50/p99 latency; at the end errors, p50/p99, each process's RSS at start, after
warm-up and at the end, Redis memory and key count, and ZooKeeper's znode count. It writes
the samples to ``out/soak/soak-<time>.json`` and a plot of RSS and latency over time to the
``.png`` beside it. Exit status 1 when any request failed.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

from harness.soak import OUT_DIR
from harness.soak import plot
from harness.soak import soak


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=100.0, help="API requests per second")
    parser.add_argument("--warmup", type=float, default=None, help="seconds (default: 10 %% of the run, 60 s at most)")
    parser.add_argument("--redis", choices=["single", "sentinel"], default="single")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else min(60.0, args.minutes * 6)
    result = soak(args.minutes, args.rate, warmup, args.redis)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / time.strftime("soak-%Y%m%dT%H%M%SZ", time.gmtime())
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    plot(result["samples"], stem.with_suffix(".png"))
    print(f"soak: {result['minutes']} min at {result['rate']:.0f} req/s, edge nodes: {result['edge_nodes']}")
    print(f"  requests {result['requests']}, errors {result['errors']} {result['error_examples']}")
    warm = result["after_warmup"]
    print(f"  latency p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms; after the {result['warmup_s']:.0f} s "
          f"warm-up p50 {warm['p50_ms']} ms, p99 {warm['p99_ms']} ms ({warm['errors']} errors)")
    for name, end in result["rss_end_kib"].items():
        print(f"  RSS {name:<14} start {(result['rss_start_kib'].get(name) or 0) / 1024:7.1f} MiB, "
              f"after warm-up {(result['rss_warm_kib'].get(name) or 0) / 1024:7.1f} MiB, "
              f"end {(end or 0) / 1024:7.1f} MiB "
              f"({result['rss_growth_after_warmup_pct'][name]} % since warm-up)")
    used_before, used_after = (used / 2**20 for used in result["redis_used_memory"][:2])
    print(f"  Redis used_memory {used_before:.1f} -> {used_after:.1f} MiB, "
          f"keys {' -> '.join(map(str, result['redis_keys']))} (start, warm, end); "
          f"ZooKeeper znodes {result['zk_znodes'][0]} -> {result['zk_znodes'][1]}")
    print(f"  wrote {stem.with_suffix('.json')} and {stem.with_suffix('.png')}")
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
