"""OpenClaw 2026.6.x's own lock on `auth-profiles.json`, taken exactly the way its store takes it.

OpenClaw (src/plugin-sdk/file-lock.ts over @openclaw/fs-safe's sidecar lock; options
AUTH_STORE_LOCK_OPTIONS in src/agents/auth-profiles/constants.ts) does every load-update-save of
the file under a sidecar `<file>.lock`:

- created with `open(path, "wx")` (O_EXCL), holding `JSON.stringify({pid, createdAt, starttime},
  null, 2) + "\\n"`: `createdAt` an ISO 8601 UTC date, `starttime` the holder's start time in clock
  ticks (field 22 of /proc/<pid>/stat; Linux only);
- a lock with a pid is stale only when that pid is dead (or a zombie), or when `starttime` no
  longer matches (the pid was reused); its age does not matter. A lock without a pid is stale when
  its `createdAt` is older than 30 s or unreadable; one with neither is never stale;
- a stale lock is removed only if it is unchanged since it was read (same inode, same bytes);
- waiters retry 10 times, delay min(10 s, 100 ms * 2^attempt) * (1 + random), then give up;
- the holder removes the lock on release, again only if it is still its own.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kimi_tray.core.errors import OpenClawError

STALE_AFTER = 30.0  # seconds; applies only to a lock that names no pid
MIN_DELAY, MAX_DELAY, FACTOR = 0.1, 10.0, 2.0
DEFAULT_WAIT = 10.0  # OpenClaw holds the lock for milliseconds; ten seconds is plenty


class OpenClawLockBusy(OpenClawError):
    """A live OpenClaw kept its lock past our limit; nothing was written."""


@dataclass(frozen=True)
class _Snapshot:
    raw: bytes
    inode: tuple[int, int]


def lock_path_for(path: Path) -> Path:
    """`<file>.lock` next to the file, the directory resolved as OpenClaw resolves it."""
    try:
        directory = path.parent.resolve()
    except OSError:
        directory = path.parent
    return directory / f"{path.name}.lock"


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat, as OpenClaw reads it to notice a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 1:].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def pid_definitely_dead(pid: int) -> bool:
    """OpenClaw's isPidDefinitelyDead: no such process, or a zombie."""
    if pid <= 0:
        return True
    if os.name == "nt":
        # os.kill(pid, 0) would terminate the process on Windows. Count it as alive: OpenClaw
        # reclaims a dead holder's lock itself at its next update.
        return False
    try:
        # Not mutated: a mutant sending a real signal here (0 -> 1) hangs up whatever process
        # the tests name, the machine's pid 1 among them, and ends the test run with it.
        os.kill(pid, 0)  # pragma: no mutate
    except ProcessLookupError:
        return True
    except OSError:
        return False  # EPERM: alive, someone else's
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return any(line.split()[1:2] == ["Z"] for line in status.splitlines() if line.startswith("State:"))


def is_stale(payload: Any, now: float) -> bool:
    """OpenClaw's shouldRemoveDeadOwnerOrExpiredLock, rule for rule."""
    if not isinstance(payload, dict):
        return False
    pid = payload.get("pid")
    if isinstance(pid, (int, float)) and not isinstance(pid, bool) and pid:
        starttime = payload.get("starttime")
        if isinstance(starttime, (int, float)) and not isinstance(starttime, bool):
            current = process_start_time(int(pid))
            if current is not None and current != starttime:
                return True
        return not float(pid).is_integer() or pid_definitely_dead(int(pid))
    created = payload.get("createdAt")
    if isinstance(created, str):
        try:
            created_at = dt.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return True
        return now - created_at > STALE_AFTER
    return False


def _read(path: Path) -> tuple[_Snapshot, Any] | None:
    try:
        with open(path, "rb") as handle:
            st = os.fstat(handle.fileno())
            raw = handle.read()
    except FileNotFoundError:
        return None
    try:
        payload = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        payload = None
    return _Snapshot(raw, (st.st_dev, st.st_ino)), payload


def _remove_if_unchanged(path: Path, snapshot: _Snapshot) -> bool:
    current = _read(path)
    if current is None or current[0] != snapshot:
        return False
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return True


def _payload() -> bytes:
    now = dt.datetime.now(dt.timezone.utc)
    payload: dict[str, Any] = {
        "pid": os.getpid(),
        "createdAt": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
    }
    starttime = process_start_time(os.getpid())
    if starttime is not None:
        payload["starttime"] = starttime
    return (json.dumps(payload, indent=2) + "\n").encode()


@contextlib.contextmanager
def openclaw_lock(path: Path, wait: float = DEFAULT_WAIT,
                  rng: Callable[[], float] = random.random) -> Iterator[Path]:
    """Hold OpenClaw's lock on `path` (its auth store) for a read-modify-write.

    Waits with OpenClaw's own backoff up to `wait` seconds; raises OpenClawLockBusy after that,
    having written nothing. A lock left by a dead process is taken over, as OpenClaw does.
    """
    lock = lock_path_for(path)
    started = time.monotonic()
    attempt = 0
    snapshot: _Snapshot | None = None
    while snapshot is None:
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            fd = -1
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise OpenClawError(f"The OpenClaw directory {path.parent} does not exist.") from None
            raise OpenClawError(f"Could not create OpenClaw's lock {lock}: {exc.strerror}.") from None
        if fd >= 0:
            raw = _payload()
            try:
                os.write(fd, raw)
                st = os.fstat(fd)
            finally:
                os.close(fd)
            snapshot = _Snapshot(raw, (st.st_dev, st.st_ino))
            break
        held = _read(lock)
        if held is None:
            continue  # released between our open and our read
        if is_stale(held[1], time.time()):
            _remove_if_unchanged(lock, held[0])
            continue
        elapsed = time.monotonic() - started
        if elapsed >= wait:
            raise OpenClawLockBusy(_busy_message(lock, held[1], elapsed))
        base = min(MAX_DELAY, max(MIN_DELAY, MIN_DELAY * FACTOR ** attempt))
        time.sleep(min(MAX_DELAY, base * (1 + rng()), max(0.0, wait - elapsed)))
        attempt += 1
    try:
        yield lock
    finally:
        _remove_if_unchanged(lock, snapshot)


def _busy_message(lock: Path, payload: Any, waited: float) -> str:
    pid = payload.get("pid") if isinstance(payload, dict) else None
    if isinstance(pid, int):
        held = f"is held by process {pid}, which is still running"
    elif isinstance(payload, dict) and isinstance(payload.get("createdAt"), str):
        held = "is held by a writer"
    else:  # empty or unreadable: OpenClaw waits on it for good too
        held = "names no process, so OpenClaw never takes it over either"
    return (f"OpenClaw's lock {lock} {held}; waited {round(waited, 1):g} s and wrote nothing. "
            "kimi-tray will try again; if no OpenClaw is running, delete that file.")
