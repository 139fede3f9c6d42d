"""One kimi-tray (tray or daemon) per user: two refreshers would race over the refresh token.

The lock file also says who holds it (pid, since when, tray or daemon, which program), so
`status` and `doctor` can tell whether anything is renewing right now.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from kimi_tray.core.private_dir import ensure_private_dir

LOCK_NAME = "instance.lock"


class AlreadyRunning(Exception):
    pass


@dataclass(frozen=True)
class Holder:
    pid: int
    started_at: float | None
    mode: str  # tray or daemon
    program: str

    def describe(self) -> str:
        since = (time.strftime("%Y-%m-%d %H:%M", time.localtime(self.started_at))
                 if self.started_at else "an unknown time")
        return f"the {self.mode} runs (pid {self.pid}, since {since}, {self.program})"


def _program() -> str:
    from kimi_tray.platform.autostart import launch_spec

    return " ".join(launch_spec().argv)


class InstanceLock:
    """Held for the life of the process; the OS drops it if the process dies."""

    def __init__(self, state_dir: Path, mode: str = "tray") -> None:
        self.path = state_dir / LOCK_NAME
        self.mode = mode
        self._fd: int | None = None

    def acquire(self) -> None:
        ensure_private_dir(self.path.parent)
        # Built before locking: between the lock and the write, readers see a holder without a
        # pid (install.sh and uninstall could then not stop it), so that moment stays minimal.
        record = json.dumps({"pid": os.getpid(), "started_at": time.time(), "mode": self.mode,
                             "program": _program()}).encode()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            _try_lock(fd)
        except OSError:
            os.close(fd)
            raise AlreadyRunning(self.holder()) from None
        os.ftruncate(fd, 0)
        os.write(fd, record)
        self._fd = fd

    def holder(self) -> str:
        found = read_holder_record(self.path)
        return str(found.pid) if found else "?"

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_holder_record(path: Path) -> Holder | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, int):  # the bare pid older versions wrote
        return Holder(data, None, "tray or daemon", "unknown program")
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
        return None
    return Holder(data["pid"], data.get("started_at"), str(data.get("mode", "tray or daemon")),
                  str(data.get("program", "unknown program")))


def running_instance(state_dir: Path) -> Holder | None:
    """Who renews right now, or None: the lock tells, not the pid (pids are reused)."""
    path = state_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        _try_lock(fd, shared=True)
    except OSError:
        return read_holder_record(path) or Holder(0, None, "tray or daemon", "unknown program")
    finally:
        os.close(fd)
    return None


if sys.platform == "win32":  # pragma: no cover - Windows only
    import msvcrt

    def _try_lock(fd: int, shared: bool = False) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int, shared: bool = False) -> None:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
