"""Hostile-input fuzzing of the web tier over HTTP: ``make fuzz`` (``python -m scripts.fuzz``).

A seeded generator sends requests to every endpoint (bad numbers, NaN/inf, huge and deeply
nested bodies, malformed JSON, bad sensor ids, path and query junk, wrong methods and content
types, plus valid readings and aggregates so acceptance is exercised too, and the attacks of
issue 10: event amplification, label cardinality, epoch poisoning, a flood of new sensor ids)
and checks two promises after each one: no answer is a 5xx, and a rejected request (4xx) leaves
Redis as it was: the same keys under the prefix, each time series with the same sample count,
each stream, hash and string unchanged. Only accepted requests may add. At the end, no HTTP
method or group name the generator made up may be a label value in ``/metrics``, no poisoned
epoch may have moved the fenced group's fence, and no more plain sensors than ``MAX_SENSORS``
may be stored. Without ``--url`` it starts its own local stack on free ports (ZooKeeper, Redis,
web under gunicorn; no edge nodes, whose writes would blur the check) and stops it after. Exit
status 1 on any violation. The generator and the checks are in `harness.fuzz`.

    python -m scripts.fuzz --requests 10000 --seed 1
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from harness.fuzz.campaign import campaign


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--url", help="a running web tier (default: start a private stack)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="its Redis (with --url)")
    parser.add_argument("--prefix", default="ag:", help="the web tier's key prefix")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--zk", help="its ZooKeeper (with --url), for the epoch-poisoning check")
    parser.add_argument("--zk-root", default="/aeroguard", help="its ZK_ROOT")
    parser.add_argument("--max-sensors", type=int, help="its MAX_SENSORS (with --url), for the sensor-flood check")
    args = parser.parse_args(argv)
    report = campaign(args.requests, args.seed, args.prefix, url=args.url, redis_url=args.redis_url,
                      zk_hosts=args.zk, zk_root=args.zk_root, max_sensors=args.max_sensors,
                      workers=args.workers)
    print(report.summary())
    for violation in report.violations[:20]:
        print(f"  VIOLATION {violation}")
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
