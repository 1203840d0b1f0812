"""``/api/v1/anomalies?sensor=`` against a full event log: see `harness.bench_anomalies`."""
import sys

from harness.bench_anomalies import main

if __name__ == "__main__":
    sys.exit(main())
