"""Safe file primitives: atomic writes, JSON reads with clear errors, and the two Kimi locks."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from kimi_tray.errors import LocalFileError, LockTimeout

MAX_JSON_BYTES = 1024 * 1024


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write via a same-directory temp file, fsync, chmod, rename: readers never see half a file."""
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise LocalFileError(f"Could not write {path}: {exc.strerror or exc}.") from None
    fsync_directory(path.parent)


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


def ensure_private_dir(directory: Path) -> None:
    """Create a directory (and parents) the way the Kimi CLIs do: mode 0700 for what we create."""
    if directory.is_dir():
        return
    try:
        directory.mkdir(parents=True, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
    except OSError as exc:
        raise LocalFileError(f"Could not create {directory}: {exc.strerror or exc}.") from None


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
        value = json.loads(raw.decode("utf-8"))
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
        text = original.decode("utf-8", "replace")
        trailing_newline = text.endswith("\n")
        lines = text.splitlines()
        if len(lines) <= 1:
            indent = None
        else:
            second = lines[1]
            leading = second[: len(second) - len(second.lstrip())]
            indent = leading if leading and set(leading) == {"\t"} else len(leading) or None
    separators = (",", ": ") if indent is not None else (", ", ": ")
    if original is not None and indent is None and b", " not in original and b": " not in original:
        separators = (",", ":")
    body = json.dumps(value, indent=indent, ensure_ascii=False, separators=separators)
    return (body + ("\n" if trailing_newline else "")).encode("utf-8")


class FileLock:
    """An exclusive OS lock on a file (flock), as the Python Kimi CLI takes on kimi-code.lock."""

    def __init__(self, path: Path, timeout: float = 10.0, poll: float = 0.05) -> None:
        self.path = path
        self.timeout = timeout
        self.poll = poll
        self._fd: int | None = None

    def acquire(self) -> None:
        ensure_private_dir(self.path.parent)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise LocalFileError(f"Could not open lock {self.path}: {exc.strerror or exc}.") from None
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                _lock_fd(fd)
                self._fd = fd
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise LockTimeout(
                        f"Another program held {self.path} for more than {self.timeout:g} s."
                    ) from None
                time.sleep(self.poll)

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
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            raise BlockingIOError from None

    def _unlock_fd(fd: int) -> None:
        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


class DirectoryLock:
    """The TypeScript Kimi Code CLI's lock (proper-lockfile): `mkdir <sentinel>.lock`.

    Stale after `stale` seconds without an mtime update; the holder touches it every stale/2.
    """

    def __init__(
        self, sentinel: Path, timeout: float = 10.0, stale: float = 5.0, poll: float = 0.1
    ) -> None:
        self.sentinel = sentinel
        self.lock_dir = sentinel.with_name(sentinel.name + ".lock")
        self.timeout = timeout
        self.stale = stale
        self.poll = poll
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None

    def acquire(self) -> None:
        ensure_private_dir(self.sentinel.parent)
        if not self.sentinel.exists():
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.sentinel, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                os.mkdir(self.lock_dir)
                break
            except FileExistsError:
                if self._remove_if_stale():
                    continue
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        f"Another program held {self.lock_dir} for more than {self.timeout:g} s."
                    ) from None
                time.sleep(self.poll)
            except OSError as exc:
                raise LocalFileError(
                    f"Could not create lock {self.lock_dir}: {exc.strerror or exc}."
                ) from None
        self._stop.clear()
        self._keeper = threading.Thread(target=self._keep_fresh, name="kimi-lock-keeper", daemon=True)
        self._keeper.start()

    def _remove_if_stale(self) -> bool:
        try:
            age = time.time() - self.lock_dir.stat().st_mtime
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

