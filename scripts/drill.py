"""``python -m scripts.drill [--faults ...] [--json PATH]``: the edge fault drill (`harness.drill.cli`)."""
import sys

from harness.drill.cli import main

if __name__ == "__main__":
    sys.exit(main())
