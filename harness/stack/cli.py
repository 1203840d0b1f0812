"""The local stack launcher: ``python -m scripts.stack run|up|status|down``.

Starts, in order, a 3-node ZooKeeper ensemble (tickTime 500 ms), one redis-server with
RedisTimeSeries (or, with ``REDIS=sentinel``, a master, a replica and 3 Sentinels:
`harness.redis_topology`) and the web tier under gunicorn, all on 127.0.0.1, with state (data, logs,
``stack.json``) under ``.run/``. Each service is one entry of `SERVICES`: a builder taking the
`StackConfig` and the environment exported by the services before it (``ZK_HOSTS``,
``REDIS_URL``, ...) and returning an object with ``start``/``wait_ready``/``stop``/``records``/
``exports``. ``up`` records every process (name, pid, ports, URL, and the command line of the
ones `restart` can start again) in ``stack.json``; ``down`` stops exactly those PIDs; ``run`` is
``up`` in the foreground until Ctrl-C or SIGTERM. The fault drill (`harness.drill`) kills and
`restart`s recorded processes, and keeps ``stack.json`` current.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Sequence

from harness.process import ServerError
from harness.process import stop_pid
from harness.stack.config import StackConfig
from harness.stack.launcher import load_stack
from harness.stack.launcher import record_alive
from harness.stack.launcher import start_services
from harness.stack.launcher import stop_services
from harness.stack.launcher import write_stack


def print_stack(stack: dict) -> None:
    for rec in stack["services"]:
        state = "alive" if record_alive(rec) else "DEAD"
        print(f"  {rec['name']:<12} {state:<6} pid {rec['pid']:<8} {rec['url']:<28} log {rec['log']}")


def already_running(config: StackConfig) -> bool:
    """True (and says so) when a recorded stack still runs; removes a stack.json of dead PIDs."""
    stack = load_stack(config)
    if stack is None:
        return False
    if not any(record_alive(rec) for rec in stack["services"]):
        config.stack_file.unlink()
        return False
    print(f"stack already running (from {config.stack_file}); not starting duplicates:")
    print_stack(stack)
    return True


def cmd_up(config: StackConfig) -> int:
    if already_running(config):
        return 0
    config.log_dir.mkdir(parents=True, exist_ok=True)
    services, exports = start_services(config)
    stack = write_stack(config, services, exports)
    print(f"stack is up (state in {config.state_dir}):")
    print_stack(stack)
    return 0


def cmd_run(config: StackConfig) -> int:
    if already_running(config):
        print("stop it first with `make down`")
        return 1
    config.log_dir.mkdir(parents=True, exist_ok=True)
    services, exports = start_services(config)
    # From here on a signal only asks the loop below to stop, so shutdown is not interrupted.
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    code = 0
    try:
        stack = write_stack(config, services, exports)
        print("stack is running; Ctrl-C to stop:")
        print_stack(stack)
        while not stop.wait(0.5):
            dead = [rec["name"] for rec in stack["services"] if not record_alive(rec)]
            if dead:
                print(f"service(s) died: {', '.join(dead)} (see their logs); stopping", file=sys.stderr)
                code = 1
                break
    finally:
        print("==> stopping the stack", flush=True)
        stop_services(services)
        config.stack_file.unlink(missing_ok=True)
    return code


def cmd_status(config: StackConfig) -> int:
    stack = load_stack(config)
    if stack is None:
        print(f"stack not running (no {config.stack_file})")
        return 0
    print(f"stack started from {config.stack_file}:")
    print_stack(stack)
    return 0 if all(record_alive(rec) for rec in stack["services"]) else 1


def cmd_down(config: StackConfig) -> int:
    stack = load_stack(config)
    if stack is None:
        print(f"stack not running (no {config.stack_file})")
        return 0
    for rec in reversed(stack["services"]):
        if record_alive(rec):
            print(f"==> stopping {rec['name']} (pid {rec['pid']})", flush=True)
            stop_pid(rec["pid"])
        else:
            print(f"    {rec['name']} (pid {rec['pid']}) is not running")
    config.stack_file.unlink()
    print("stack is down")
    return 0


COMMANDS = {"run": cmd_run, "up": cmd_up, "status": cmd_status, "down": cmd_down}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.stack", description=__doc__)
    parser.add_argument("command", choices=list(COMMANDS))
    parser.add_argument("--state-dir", type=Path, help="state folder (default .run, or AEROGUARD_RUN_DIR)")
    parser.add_argument("--services", help="comma-separated subset to start (default: all)")
    args = parser.parse_args(argv)
    # SIGTERM while starting behaves like Ctrl-C: what was started is stopped, not orphaned.
    # SIGINT too, even when our parent ignored it (a shell's background job).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    config = StackConfig.from_env(os.environ, args.state_dir)
    if args.services:
        config = dataclasses.replace(config, services=tuple(args.services.split(",")))
    try:
        return COMMANDS[args.command](config)
    except ServerError as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stack: interrupted; what had started was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
