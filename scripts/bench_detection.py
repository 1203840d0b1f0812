"""``/detectar`` with all four detectors over a remote backend: worker RSS and latency at a fixed rate.

``python -m scripts.bench_detection [--rate 200] [--seconds 20] [--backend grpc|rest]`` starts a
private redis-server, the TF Serving stand-in and gunicorn (2 workers) on free loopback ports,
checks that the workers judge with no detector degraded and never map TensorFlow, prints their
RSS, then paces ``/detectar`` requests open-loop (latency counted from each request's scheduled
time, so queueing shows) and prints p50/p99 and the CPU each request cost each process (the
web workers, the stand-in, Redis, this load generator): on a small machine they share the cores,
so the latency says as much about the stand-in as about the web tier. Everything it started is
stopped at the end.
With ``--profile N`` it sends N sequential requests in process instead and prints what each
costs the web worker: CPU, Redis round trips and cProfile's hottest functions
(`harness.detectar_profile`).
"""
from __future__ import annotations

import argparse
import os
import sys

from harness.bench import paced
from harness.detectar_profile import HEADERS
from harness.detectar_profile import backends
from harness.detectar_profile import profile_detectar
from harness.process import cpu_by_program
from harness.served_web import served_web
from harness.served_web import worker_rss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--backend", choices=("grpc", "rest"), default="grpc")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--profile", type=int, metavar="N", default=0,
                        help="instead of the load: N sequential /detectar in this process, with cProfile")
    args = parser.parse_args(argv)
    with backends(args.backend) as (web_env, tmp):
        if args.profile:
            found = profile_detectar(web_env, args.profile)
            print(f"/detectar in process over {args.backend}, {found['requests']} sequential requests: "
                  f"CPU {found['cpu_ms_mean']:.2f} ms mean ({found['cpu_ms_median']:.2f} median; "
                  f"{found['thread_cpu_ms_mean']:.2f} on the request thread), "
                  f"wall {found['wall_ms_median']:.2f} ms median ({found['wall_ms_p99']:.2f} p99), "
                  f"{found['round_trips']:.2f} Redis round trips per request")
            return 0
        with served_web(web_env, tmp, args.workers) as (web_port, master_pid):
            for pid, rss, tf in worker_rss(master_pid):
                print(f"worker {pid}: RSS {rss:.1f} MiB, TensorFlow mapped: {tf}")
            before = cpu_by_program()
            load = paced(f"127.0.0.1:{web_port}",
                         lambda client, n: f"/detectar?dato={20 + 0.01 * (n % 7)}&sensor=b{client % 4}",
                         args.rate, args.seconds, clients=16, headers=HEADERS)
            after = cpu_by_program()
            print(f"/detectar over {args.backend} at {args.rate:.0f} req/s for {args.seconds:.0f} s: "
                  f"n={load['requests']} "
                  f"p50={load['p50_ms']:.2f} ms p99={load['p99_ms']:.2f} ms max={load['max_ms']:.1f} ms "
                  f"errors={load['errors']}")
            report_cpu(before, after, load["requests"], args.rate)
    return 0


def report_cpu(before: dict[str, float], after: dict[str, float], requests: int, rate: float) -> None:
    """Print the CPU each request cost each process, beside what the cores have per request."""
    spent = {name: 1000 * (after[name] - before.get(name, 0.0)) / max(1, requests) for name in after}
    ranked = sorted(spent.items(), key=lambda kv: -kv[1])
    cores = os.cpu_count() or 1
    print("CPU per request (ms), by process: " + ", ".join(f"{name} {ms:.2f}" for name, ms in ranked if ms >= 0.01)
          + f"; {sum(spent.values()):.2f} in all, of {1000 * cores / rate:.2f} that {cores} cores have per request"
          f" at {rate:.0f} req/s")


if __name__ == "__main__":
    sys.exit(main())
