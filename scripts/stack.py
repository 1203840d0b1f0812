"""``python -m scripts.stack run|up|status|down``: the local stack (`harness.stack.cli`)."""
import sys

from harness.stack.cli import main

if __name__ == "__main__":
    sys.exit(main())
