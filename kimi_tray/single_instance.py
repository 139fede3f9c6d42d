"""One kimi-tray (tray or daemon) per user: two refreshers would race over the refresh token."""

from __future__ import annotations

import os
from pathlib import Path

from kimi_tray.fileio import ensure_private_dir


class AlreadyRunning(Exception):
    pass


class InstanceLock:
    """Held for the life of the process; the OS drops it if the process dies."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "instance.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        ensure_private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            _try_lock(fd)
        except OSError:
            os.close(fd)
            raise AlreadyRunning(self.holder()) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


if os.name == "nt":  # pragma: no cover - Windows only
    import msvcrt

    def _try_lock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
