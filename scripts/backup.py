"""``python -m scripts.backup backup|restore [file]``: the local stack's Redis to/from backups/
(`harness.backup`)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from harness.backup import BACKUP_DIR
from harness.backup import backup
from harness.backup import newest_backup
from harness.backup import restore
from harness.process import ServerError
from harness.stack.config import StackConfig


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.backup", description=__doc__)
    parser.add_argument("command", choices=["backup", "restore"])
    parser.add_argument("file", nargs="?", type=Path, help="restore: the .rdb (default: the newest in --dir)")
    parser.add_argument("--dir", type=Path, default=BACKUP_DIR, help="backup folder (default backups/)")
    parser.add_argument("--state-dir", type=Path, help="the stack's state folder (default .run, or AEROGUARD_RUN_DIR)")
    args = parser.parse_args(argv)
    config = StackConfig.from_env(os.environ, args.state_dir)
    try:
        if args.command == "backup":
            backup(config, args.dir)
        else:
            restore(config, args.file or newest_backup(args.dir))
    except ServerError as exc:
        print(f"backup: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
