"""Entry point for `python -m kimi_tray`."""

import sys

from kimi_tray.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
