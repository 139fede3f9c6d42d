"""Waits for the Kimi lock the way the Python Kimi CLI 1.52 does: a few non-blocking tries about
a second apart, then gives up (and would refresh without the lock).

usage: kimi_cli_waiter.py LOCK_FILE [TRIES] [INTERVAL]; exit 0 and "got" if it got the lock.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time


def main() -> int:
    path, tries = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5
    interval = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    for _ in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            print("got", flush=True)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return 0
        except BlockingIOError:
            time.sleep(interval)
    print("gave up", flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
