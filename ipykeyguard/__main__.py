"""``python -m ipykeyguard``: the CLI, runnable by absolute interpreter path (git filters use it)."""

import sys

from .cli.app import main

if __name__ == "__main__":
    sys.exit(main())
