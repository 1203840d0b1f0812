"""The installation check (``make setup``'s last step): can Redis Stack and ZooKeeper run here?

``python -m scripts.servers check`` prints what it finds and exits 1 with the setup hint when
something is missing. Starts no server.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Sequence

from harness.process import ServerError
from harness.process import ServerNotInstalled
from harness.redis_server import find_redis
from harness.zookeeper import find_java
from harness.zookeeper import zookeeper_classpath


def check() -> int:
    """Verify that Redis Stack and ZooKeeper can run here; print what is found."""
    try:
        paths = find_redis()
        version = subprocess.run([str(paths.server), "--version"], env=paths.env(),
                                 capture_output=True, text=True, timeout=10)
        if version.returncode != 0:
            raise ServerNotInstalled(f"redis-server --version failed: {version.stderr.strip()}")
        print(f"    {version.stdout.strip()}")
        print(f"    redistimeseries: {paths.timeseries}")
        print(f"    zookeeper classpath: {zookeeper_classpath()}")
        print(f"    java: {find_java()}")
    except ServerError as exc:
        print(f"setup check: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.servers", description=__doc__)
    parser.add_argument("command", choices=["check"])
    parser.parse_args(argv)
    return check()
