"""`python -m dashboard_metrics` runs the command line."""

import sys

from dashboard_metrics.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
