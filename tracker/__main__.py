"""``python -m tracker``: the command line."""

import sys

from tracker.cli import main

# Guarded: anyio's worker processes re-import the main module, which must not run the CLI again.
if __name__ == "__main__":
    sys.exit(main())
