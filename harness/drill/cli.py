"""Fault drill for the edge cluster: ``python -m scripts.drill [--faults ...] [--json PATH]``.

Runs against the stack ``make up`` started (``.run/stack.json``, or ``AEROGUARD_RUN_DIR``):
its 3-node ZooKeeper ensemble, web tier and edge group; when none runs it starts one the way
``make up`` does and leaves it running. It injects each fault of the fault matrix
(docs/reliability.md) that concerns the edge (rows 1-6 and 9, plus a planned SIGTERM), one
after the other, restarts what a fault killed with the same command line
(`harness.stack.launcher.restart`, which keeps stack.json current, so ``make down`` stops
exactly what runs), restores the cluster config it changed, and prints a table: fault,
recovery time, rounds missed, readings lost, readings duplicated, invariants I1-I6 (I7 for
reconfiguration), and the latency from a reading's measurement to its stored verdict.
``--json PATH`` also writes it. What the web tier stored is read from the
edges' event logs (each POST answered 201) and checked against the web tier's own series.
``--own-stack`` instead brings up a private stack through `harness.redis_server` and
`harness.zookeeper` (the real web tier runs in this process behind a recorder) with three nodes
of group ``drill``, and removes it.

Recovery is the time from the fault (or, for an outage, from its repair) to the next
aggregate the web tier stores. Budgets (issue 4): leader kill -9 <= T + tickTime + period;
SIGTERM <= one period; measured -> stored p99 <= 100 ms at a 1 s period. The process, log,
proxy and invariant tools live in `harness.faults`, shared with the fault tests.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from harness.drill.runner import Drill
from harness.drill.stacks import TICK_S
from harness.drill.stacks import AttachedStack
from harness.drill.stacks import OwnStack
from harness.process import ROOT
from harness.process import ServerError
from harness.stack.config import StackConfig

FAULTS = ("leader_kill9", "leader_sigterm", "leader_paused", "zk_follower_down", "zk_leader_down",
          "quorum_lost", "follower_kill9", "web_down", "reconfig")


def print_table(rows: list[dict], latency: dict, out=sys.stdout) -> None:
    head = ("fault", "recovery_s", "budget_s", "rounds_missed", "readings_lost", "readings_duplicated",
            "invariants")
    print("| " + " | ".join(head) + " |", file=out)
    print("|" + "---|" * len(head), file=out)
    for row in rows:
        print("| " + " | ".join(str(row[h]) for h in head) + " |", file=out)
    for row in rows:
        if row["notes"]:
            print(f"- {row['fault']}: {row['notes']}", file=out)
    if latency:
        print(f"- measured -> stored latency over {latency['readings']} readings: p50 {latency['p50_ms']} ms, "
              f"p99 {latency['p99_ms']} ms (budget 100 ms); of which measured -> POST sent (the edge): "
              f"p50 {latency['edge_p50_ms']} ms, p99 {latency['edge_p99_ms']} ms", file=out)


def build_stack(args: argparse.Namespace, since: float) -> OwnStack | AttachedStack:
    """The stack ``make up`` started (started now if none runs), or with ``--own-stack`` a private one."""
    if args.own_stack:
        directory = Path(tempfile.mkdtemp(prefix="drill-", dir=ROOT / ".run" if (ROOT / ".run").is_dir() else None))
        print(f"drill: private stack, state and logs in {directory}", file=sys.stderr)
        return OwnStack(directory, args.period or 1.0, args.session_timeout or 2.0)
    config = StackConfig.from_env(os.environ, args.state_dir)
    stack = AttachedStack(config, since)
    print(f"drill: stack of {config.stack_file}, group {stack.group}, T = {stack.T:g} s; "
          f"event logs {', '.join(str(e.tail.path) for e in stack.edges.values())}", file=sys.stderr)
    return stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.drill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--own-stack", action="store_true",
                        help="bring up a private stack (and remove it) instead of using the `make up` one")
    parser.add_argument("--state-dir", type=Path,
                        help="the `make up` stack's folder (default .run or AEROGUARD_RUN_DIR)")
    parser.add_argument("--period", type=float, help="sampling period (s); --own-stack only (default 1)")
    parser.add_argument("--session-timeout", type=float,
                        help="edge ZooKeeper session timeout T (s); --own-stack only (default 2)")
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated subset of {','.join(FAULTS)}")
    parser.add_argument("--warmup", type=int, default=12,
                        help="rounds before the first measurement (past the web tier's first full window)")
    parser.add_argument("--quiet-rounds", type=int, default=20, help="fault-free rounds for the latency figures")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("kazoo.client").setLevel(logging.ERROR)  # the drill's own client, cut off on purpose
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = set(faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown fault(s): {sorted(unknown)}")
    if not args.own_stack and (args.period or args.session_timeout):
        parser.error("--period and --session-timeout set up a private stack (--own-stack); a `make up` stack "
                     "has its own (EDGE_PERIOD_S, EDGE_SESSION_TIMEOUT_S)")
    # SIGTERM unwinds like Ctrl-C, so the config is restored and killed processes restarted.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        stack = build_stack(args, time.time())
    except ServerError as exc:
        print(f"drill: {exc}", file=sys.stderr)
        return 1
    drill = Drill(stack, args.warmup, args.quiet_rounds)
    try:
        drill.up()
        for name in faults:
            print(f"drill: {name} ...", file=sys.stderr)
            drill.finish(getattr(drill, f"fault_{name}")())
            drill.steady(3)
        rows = [row.result for row in drill.rows]
        latency = drill.latency()
    finally:
        drill.down()
    print(f"period {drill.period:g} s, T = {drill.T:g} s, tickTime {TICK_S * 1000:.0f} ms, group {stack.group}")
    print_table(rows, latency)
    if not args.own_stack:
        print(f"(the stack is still up{', started by the drill' if stack.started_stack else ''}: `make down` "
              "stops it)", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "latency": latency, "period_s": drill.period,
                                               "session_timeout_s": drill.T, "group": stack.group,
                                               "own_stack": args.own_stack, "quiet": drill.quiet}, indent=2))
    ok = all(r["invariants"] == "ok" and (r["recovery_s"] or 0) <= (r["budget_s"] or float("inf")) for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
