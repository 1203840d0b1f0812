"""``python -m scripts.servers check``: can Redis Stack and ZooKeeper run here (`harness.install_check`)."""
import sys

from harness.install_check import main

if __name__ == "__main__":
    sys.exit(main())
