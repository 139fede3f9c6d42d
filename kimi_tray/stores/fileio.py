"""Safe file primitives: atomic writes, JSON reads with clear errors, and the two Kimi locks."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import threading
import time
from pathlib import Path
from typing import Any

from kimi_tray.core.clock import Clock, SystemClock
from kimi_tray.core.errors import LocalFileError, LockTimeout
from kimi_tray.core.private_dir import ensure_private_dir

MAX_JSON_BYTES = 1024 * 1024
UTF8_BOM = b"\xef\xbb\xbf"
TEMP_MARK = ".tmp."
STALE_TEMP_AGE = 60.0
_FS_IOC_GETFLAGS = 0x80086601  # Linux: read the inode flags (chattr)
_IMMUTABLE_OR_APPEND = 0x10 | 0x20
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def real_path(path: Path) -> Path:
    """Where a write must land: a symlink is followed, so the link stays a link."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


class PreparedWrite:
    """A temp file next to the target, already `reserve` bytes long and fsynced.

    Made before a token refresh, it proves the save will fit on the disk and may replace the
    target; after the refresh only an overwrite in place and a rename are left to do.
    """

    def __init__(self, path: Path, reserve: int, mode: int = 0o600) -> None:
        self.path = path
        self.target = real_path(path)
        self.mode = mode
        self.tmp = self.target.with_name(
            f"{self.target.name}{TEMP_MARK}{os.getpid()}.{os.urandom(4).hex()}"
        )
        self._fd: int | None = None
        self._committed = False
        self.reserve = 0
        self.base: tuple[dict[str, Any], bytes | None] | None = None  # the target as read before
        check_replaceable(self.target)
        try:
            self._fd = os.open(self.tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)
            os.fchmod(self._fd, mode)  # exactly `mode`, whatever the umask
            self.reserve = max(1, reserve)
            _write_all(self._fd, b" " * self.reserve)
            os.fsync(self._fd)
        except OSError as exc:
            self.discard()
            raise LocalFileError(f"Could not write {path}: {exc.strerror or exc}.") from None

    def commit(self, data: bytes, rename_first: bool = False) -> None:
        """Overwrite the reserved bytes with `data`, fsync, rename over the target.

        `rename_first` renames before the fsync (both still happen before this returns): for a
        token the server has just rotated, where a kill before the rename loses the login, while
        the page cache already protects the complete file against a kill.
        """
        if self._fd is None:
            raise LocalFileError(f"Could not write {self.path}: the prepared file is gone.")
        try:
            os.lseek(self._fd, 0, os.SEEK_SET)
            if rename_first and len(data) <= self.reserve and data.rstrip().endswith(b"}"):
                # JSON may end in whitespace: fill the reserved bytes, so no truncate (a journal
                # operation that can wait for other processes' fsyncs) comes before the rename.
                _write_all(self._fd, data + b" " * (self.reserve - len(data)))
                os.replace(self.tmp, self.target)
                self._committed = True
                os.ftruncate(self._fd, len(data))
            else:
                _write_all(self._fd, data)
                os.ftruncate(self._fd, len(data))
                if not rename_first:
                    os.fsync(self._fd)
                os.replace(self.tmp, self.target)
                self._committed = True
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
        except OSError as exc:
            self.discard()
            raise LocalFileError(f"Could not write {self.path}: {exc.strerror or exc}.") from None
        fsync_directory(self.target.parent)

    def discard(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if not self._committed:
            with contextlib.suppress(OSError):
                self.tmp.unlink()

    def __enter__(self) -> PreparedWrite:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def check_replaceable(target: Path) -> None:
    """A rename over an immutable or append-only file, or over a directory, fails: say so first."""
    try:
        st = target.stat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise LocalFileError(f"Could not read {target}: {exc.strerror or exc}.") from None
    if stat.S_ISDIR(st.st_mode):
        raise LocalFileError(f"{target} is a directory, not a file; move it away.")
    if os.name == "nt" or not stat.S_ISREG(st.st_mode):
        return
    flags = _inode_flags(target)
    if flags is not None and flags & _IMMUTABLE_OR_APPEND:
        raise LocalFileError(
            f"{target} is immutable or append-only (chattr); remove that flag with `chattr -i -a`."
        )


def _inode_flags(target: Path) -> int | None:
    import array
    import fcntl

    try:
        fd = os.open(target, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        buf = array.array("l", [0])
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, buf, True)
        return int(buf[0])
    except OSError:
        return None
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write via a same-directory temp file, fsync, chmod, rename: readers never see half a file."""
    PreparedWrite(path, len(data), mode).commit(data)


def sweep_stale_temps(directory: Path, name: str, max_age: float = STALE_TEMP_AGE) -> int:
    """Remove `<name>.tmp.*` files older than `max_age`: left by a writer killed mid-write."""
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    now = time.time()
    for entry in entries:
        if not entry.name.startswith(name + TEMP_MARK):
            continue
        with contextlib.suppress(OSError):
            if entry.is_file(follow_symlinks=False) and now - entry.stat().st_mtime > max_age:
                os.unlink(entry.path)
                removed += 1
    return removed


def fsync_directory(directory: Path) -> None:
    """Make a rename durable; not possible (nor needed) on Windows."""
    if os.name == "nt":
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_json_object(path: Path, max_bytes: int = MAX_JSON_BYTES) -> tuple[dict[str, Any], bytes]:
    """Read a JSON object, or raise LocalFileError with a sentence naming the file and the fault."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise LocalFileError(f"{path} does not exist.") from None
    except IsADirectoryError:
        raise LocalFileError(f"{path} is a directory, not a file.") from None
    except OSError as exc:
        raise LocalFileError(f"Could not read {path}: {exc.strerror or exc}.") from None
    if len(raw) > max_bytes:
        raise LocalFileError(f"{path} is larger than {max_bytes // 1024} KiB; it is not a valid file.")
    if not raw.strip():
        raise LocalFileError(f"{path} is empty.")
    try:
        # A UTF-8 byte order mark is accepted, as most JSON readers do; dump_json_like keeps it.
        value = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise LocalFileError(f"{path} is not UTF-8 text.") from None
    except json.JSONDecodeError as exc:
        raise LocalFileError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno})."
        ) from None
    if not isinstance(value, dict):
        raise LocalFileError(f"{path} must hold a JSON object, not {type(value).__name__}.")
    return value, raw


def dump_json_like(value: Any, original: bytes | None) -> bytes:
    """Serialise keeping the original file's indentation and final newline, so diffs stay small."""
    indent: int | str | None = 2
    trailing_newline = True
    if original is not None:
        text = original.decode("utf-8-sig", "replace")
        trailing_newline = text.endswith("\n")
        lines = text.splitlines()
        if len(lines) <= 1:
            indent = None
        else:
            second = lines[1]
            leading = second[: len(second) - len(second.lstrip())]
            indent = leading if leading and set(leading) == {"\t"} else len(leading) or None
    separators = (",", ": ") if indent is not None else (", ", ": ")
    if original is not None and indent is None:
        # Compact unless the original has a space after a separator; strings are left out, as a
        # value such as "a, b" says nothing about the layout.
        bare = _JSON_STRING.sub(b'""', original)
        if b", " not in bare and b": " not in bare:
            separators = (",", ":")
    try:
        body = json.dumps(value, indent=indent, ensure_ascii=False, separators=separators,
                          allow_nan=False)
    except ValueError:  # NaN or Infinity: not JSON for the other programs reading the file
        raise LocalFileError("Refusing to write a non-finite number into a JSON file.") from None
    bom = UTF8_BOM if original is not None and original.startswith(UTF8_BOM) else b""
    return bom + (body + ("\n" if trailing_newline else "")).encode("utf-8")


class FileLock:
    """An exclusive OS lock on a file (flock), as the Python Kimi CLI takes on kimi-code.lock.

    `clock` paces the waiting for another holder (tests pass a fake one)."""

    def __init__(self, path: Path, timeout: float = 10.0, poll: float = 0.05, *,
                 clock: Clock | None = None) -> None:
        self.path = path
        self.timeout = timeout
        self.poll = poll
        self._clock = clock or SystemClock()
        self._fd: int | None = None

    def acquire(self) -> None:
        ensure_private_dir(self.path.parent)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise LocalFileError(f"Could not open lock {self.path}: {exc.strerror or exc}.") from None
        deadline = self._clock.monotonic() + self.timeout
        while True:
            try:
                _lock_fd(fd)
                self._fd = fd
                return
            except BlockingIOError:
                if self._clock.monotonic() >= deadline:
                    os.close(fd)
                    raise LockTimeout(
                        f"Another program held {self.path} for more than {self.timeout:g} s."
                    ) from None
                self._clock.wait(threading.Event(), self.poll)

    def release(self) -> None:
        if self._fd is not None:
            _unlock_fd(self._fd)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock_fd(fd: int) -> None:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]  # Windows only
        except OSError:
            raise BlockingIOError from None

    def _unlock_fd(fd: int) -> None:
        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]  # Windows only

else:
    import fcntl

    def _lock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


class DirectoryLock:
    """The TypeScript Kimi Code CLI's lock (proper-lockfile): `mkdir <sentinel>.lock`.

    Stale after `stale` seconds without an mtime update; the holder touches it every stale/2.
    `clock` paces the waiting and judges the age (tests pass a fake one); the touching runs on
    real time, as the other program reads real mtimes.
    """

    def __init__(
        self, sentinel: Path, timeout: float = 10.0, stale: float = 5.0, poll: float = 0.1, *,
        clock: Clock | None = None,
    ) -> None:
        self.sentinel = sentinel
        self.lock_dir = sentinel.with_name(sentinel.name + ".lock")
        self.timeout = timeout
        self.stale = stale
        self.poll = poll
        self._clock = clock or SystemClock()
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None

    def acquire(self) -> None:
        ensure_private_dir(self.sentinel.parent)
        if not self.sentinel.exists():
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.sentinel, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        deadline = self._clock.monotonic() + self.timeout
        while True:
            try:
                os.mkdir(self.lock_dir)
                break
            except FileExistsError:
                if self._remove_if_stale():
                    continue
                if self._clock.monotonic() >= deadline:
                    raise LockTimeout(
                        f"Another program held {self.lock_dir} for more than {self.timeout:g} s."
                    ) from None
                self._clock.wait(threading.Event(), self.poll)
            except OSError as exc:
                raise LocalFileError(
                    f"Could not create lock {self.lock_dir}: {exc.strerror or exc}."
                ) from None
        self._stop.clear()
        self._keeper = threading.Thread(target=self._keep_fresh, name="kimi-lock-keeper", daemon=True)
        self._keeper.start()

    def _remove_if_stale(self) -> bool:
        try:
            age = self._clock.now() - self.lock_dir.stat().st_mtime
        except FileNotFoundError:
            return True
        if age <= self.stale:
            return False
        try:
            os.rmdir(self.lock_dir)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            # Something inside it: not a lock we may remove. Waiting (up to the timeout) rather
            # than trying again at once, which would spin on it for ever.
            return False
        return True

    def _keep_fresh(self) -> None:
        while not self._stop.wait(self.stale / 2):
            with contextlib.suppress(OSError):
                os.utime(self.lock_dir)

    def release(self) -> None:
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join()
            self._keeper = None
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(self.lock_dir)

    def __enter__(self) -> DirectoryLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class NoLock:
    """Where the owning CLI takes no lock (Windows, KIMI_DISABLE_OAUTH_LOCK=1)."""

    def __enter__(self) -> NoLock:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

