"""Logging to stderr and a rotating file, with a redaction filter as the last line of defence."""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
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


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """The log names files and accounts: the log file and its rotations are mode 0600."""

    def _open(self):  # type: ignore[no-untyped-def]
        with contextlib.suppress(OSError):
            os.close(os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
            os.chmod(self.baseFilename, 0o600)
        return super()._open()


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
            handler: logging.Handler = PrivateRotatingFileHandler(
                path, maxBytes=1_000_000, backupCount=3, encoding="utf-8"
            )
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
