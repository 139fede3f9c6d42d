"""Logging to stderr and a rotating file, with a redaction filter as the last line of defence."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from pathlib import Path

LOG_FILE_NAME = "kimi-tray.log"
_JWT = re.compile(r"eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*")
_BEARER = re.compile(r"(?i)(bearer\s+|(?:access|refresh)_?token[\"']?\s*[:=]\s*[\"']?)[\w.\-~+/]{8,}")
# Each secret with the monotonic time it was last seen, least recently seen first. A token in use
# is seen again at every read and refresh, so dropping only what has not been seen for a day (or,
# past a hard cap, the least recently seen) never drops one that can still reach a log line.
_secrets: dict[str, float] = {}
_secrets_lock = threading.Lock()
SECRET_TTL = 86400.0
MAX_SECRETS = 2048


def register_secret(*values: str, now: float | None = None) -> None:
    """Every token we see is added here, so the filter can mask it even in odd formats."""
    seen = time.monotonic() if now is None else now
    with _secrets_lock:
        for value in values:
            if value and len(value) >= 8:
                _secrets.pop(value, None)
                _secrets[value] = seen
        for value, last_seen in list(_secrets.items()):
            if seen - last_seen <= SECRET_TTL and len(_secrets) <= MAX_SECRETS:
                break
            del _secrets[value]


def redact(text: str) -> str:
    with _secrets_lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, "[redacted]")
    text = _JWT.sub("[redacted-jwt]", text)
    return _BEARER.sub(lambda m: m.group(1) + "[redacted]", text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        cleaned = redact(message)
        record.msg, record.args = cleaned, None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class PrivateRotatingFileHandler(logging.FileHandler):
    """The log, moved to .1, .2 ... when it would grow past `max_bytes`; every file mode 0600
    (it names files and accounts).

    Not `logging.handlers.RotatingFileHandler`: that module brings pickle and socket for its
    network handlers, about 1 MiB of the tray's and the daemon's memory for good.
    """

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.max_bytes = max_bytes
        self.backups = backups
        super().__init__(path, encoding="utf-8")

    def _open(self):  # type: ignore[no-untyped-def]
        with contextlib.suppress(OSError):
            os.close(os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
            os.chmod(self.baseFilename, 0o600)
        return super()._open()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self.stream is not None and self.stream.tell() + len(self.format(record)) + 1 > self.max_bytes:
                self._rotate()
        except Exception:  # as logging's own handlers do: a log that fails must not stop the app
            self.handleError(record)
            return
        super().emit(record)

    def _rotate(self) -> None:
        if self.stream is not None:
            self.stream.close()
        self.stream = None  # FileHandler reopens it at the next emit
        for number in range(self.backups - 1, 0, -1):
            older = f"{self.baseFilename}.{number}"
            if os.path.exists(older):
                os.replace(older, f"{self.baseFilename}.{number + 1}")
        if self.backups > 0:
            os.replace(self.baseFilename, f"{self.baseFilename}.1")
        else:
            os.truncate(self.baseFilename, 0)


def log_file(log_dir: Path) -> Path:
    return log_dir / LOG_FILE_NAME


def setup_logging(log_dir: Path | None, to_stderr: bool, verbose: bool = False) -> Path | None:
    """Configure the root logger once; returns the log file path (None if it cannot be written)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    redactor = RedactingFilter()
    path: Path | None = None
    if log_dir is not None:
        try:
            from kimi_tray.core.errors import LocalFileError
            from kimi_tray.core.private_dir import ensure_private_dir

            ensure_private_dir(log_dir, tighten=True)
            path = log_file(log_dir)
            handler: logging.Handler = PrivateRotatingFileHandler(path, max_bytes=1_000_000, backups=3)
            handler.setFormatter(formatter)
            handler.addFilter(redactor)
            root.addHandler(handler)
        except (OSError, LocalFileError):
            path = None
    if to_stderr:
        stream = logging.StreamHandler()
        stream.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        stream.addFilter(redactor)
        root.addHandler(stream)
    for noisy in ("httpx", "httpcore", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return path
