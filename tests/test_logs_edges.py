"""The log at its edges: what is masked and what is not, the file's mode and rotation, and what
`setup_logging` leaves behind (levels, handlers, formats), as the daemon and the CLI rely on them."""

from __future__ import annotations

import logging
import os
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kimi_tray.core import logs


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    """Each test starts with no known secrets and leaves the root logger as it found it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    noisy = {name: logging.getLogger(name).level for name in ("httpx", "httpcore", "PIL")}
    logs._secrets.clear()
    yield
    logs._secrets.clear()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        if handler not in handlers:
            handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, old in noisy.items():
        logging.getLogger(name).setLevel(old)


def flush() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()


# ----------------------------------------------------------------------------- known secrets
def test_a_secret_of_eight_characters_is_masked_and_one_of_seven_is_not() -> None:
    logs.register_secret("1234567", "12345678", "")
    assert logs.redact("a 1234567 b") == "a 1234567 b"
    assert logs.redact("a 12345678 b") == "a [redacted] b"
    assert "" not in logs._secrets


@pytest.mark.parametrize("pair", [("abcdefgh", "abcdefgh-and-more"), ("secret-01", "a-secret-01")])
def test_the_longer_of_two_overlapping_secrets_is_masked_whole(pair: tuple[str, str]) -> None:
    shorter, longer = pair
    logs.register_secret(shorter, longer)
    assert logs.redact(f"x {longer} y") == "x [redacted] y"


def test_a_secret_is_kept_exactly_a_day_and_dropped_after_it() -> None:
    logs.register_secret("old-secret-1", now=1000.0)
    logs.register_secret("new-secret-1", now=1000.0 + logs.SECRET_TTL)
    assert logs.redact("old-secret-1") == "[redacted]"  # seen exactly a day ago: still kept
    logs.register_secret("new-secret-2", now=1000.0 + logs.SECRET_TTL + 0.5)
    assert logs.redact("old-secret-1") == "old-secret-1"
    assert logs.redact("new-secret-1 new-secret-2") == "[redacted] [redacted]"


def test_seeing_a_secret_again_makes_it_the_most_recent() -> None:
    logs.register_secret("first-secret", now=0.0)
    logs.register_secret("second-secret", now=10.0)
    logs.register_secret("first-secret", now=20.0)
    assert list(logs._secrets) == ["second-secret", "first-secret"]
    assert logs._secrets["first-secret"] == 20.0


def test_without_a_time_the_monotonic_clock_is_used() -> None:
    logs.register_secret("monotonic-secret")
    seen = logs._secrets["monotonic-secret"]
    assert abs(seen - time.monotonic()) < 60


# ----------------------------------------------------------------------------- patterns
@pytest.mark.parametrize(("text", "masked"), [
    ("eyJabcd.efgh.ijkl", "[redacted-jwt]"),
    ("eyJabcd.efgh.", "[redacted-jwt]"),  # an unsigned token: the signature may be empty
    ("eyJabc.efgh.ijkl", "eyJabc.efgh.ijkl"),  # too short to be a token
    ("eyJabcd.efg.ijkl", "eyJabcd.efg.ijkl"),
])
def test_jwt_shapes(text: str, masked: str) -> None:
    assert logs.redact(text) == masked


@pytest.mark.parametrize(("text", "masked"), [
    ("Authorization: Bearer abcdefgh", "Authorization: Bearer [redacted]"),
    ("BEARER   abcdefgh", "BEARER   [redacted]"),
    ("Bearer abcdefg", "Bearer abcdefg"),  # seven characters: not a token
    ('"refresh_token": "a.b-c~d+e/f"', '"refresh_token": "[redacted]"'),
    ("accesstoken=abcdefgh", "accesstoken=[redacted]"),
    ("access_token: 'abcdefgh'", "access_token: '[redacted]'"),
    ("id_token=abcdefgh", "id_token=abcdefgh"),
])
def test_bearer_and_token_field_shapes(text: str, masked: str) -> None:
    assert logs.redact(text) == masked


# ----------------------------------------------------------------------------- the filter
def test_the_filter_formats_the_message_and_masks_the_traceback() -> None:
    logs.register_secret("secret-in-traceback")
    try:
        raise ValueError("secret-in-traceback")
    except ValueError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "value %s and %d",
                                   ("secret-in-traceback", 3), sys.exc_info())
    assert logs.RedactingFilter().filter(record) is True
    assert record.msg == "value [redacted] and 3" and record.args is None
    assert record.exc_text is not None and "ValueError: [redacted]" in record.exc_text
    assert "secret-in-traceback" not in record.exc_text


def test_a_traceback_already_formatted_is_masked_too() -> None:
    logs.register_secret("secret-in-exc-text")
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "plain", None, None)
    record.exc_text = "Traceback: secret-in-exc-text"
    logs.RedactingFilter().filter(record)
    assert record.exc_text == "Traceback: [redacted]"


# ----------------------------------------------------------------------------- the file
def test_the_log_file_and_its_rotations_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        handler = logs.PrivateRotatingFileHandler(tmp_path / "x.log", max_bytes=200, backups=2)
        handler.setFormatter(logging.Formatter("%(message)s"))
        for n in range(20):
            handler.emit(logging.LogRecord("t", logging.INFO, __file__, 1, f"line {n:03d} " + "x" * 40,
                                           None, None))
        handler.close()
    finally:
        os.umask(old)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["x.log", "x.log.1", "x.log.2"]
    for name in files:
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name


def test_setup_logging_writes_to_the_named_file_in_a_private_directory(tmp_path: Path) -> None:
    log_dir = tmp_path / "state" / "log"
    path = logs.setup_logging(log_dir, to_stderr=False)
    assert path == log_dir / "kimi-tray.log" == logs.log_file(log_dir)
    assert stat.S_IMODE(log_dir.stat().st_mode) == 0o700
    logging.getLogger("kimi_tray.x").info("hello %s", "there")
    logging.getLogger("kimi_tray.x").debug("not at INFO")
    flush()
    line = path.read_text().splitlines()[-1]
    assert line.endswith(" INFO kimi_tray.x: hello there")
    assert "not at INFO" not in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, logs.PrivateRotatingFileHandler))
    assert (handler.max_bytes, handler.backups, handler.encoding) == (1_000_000, 3, "utf-8")


def test_an_existing_loose_log_directory_is_tightened(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    log_dir.mkdir(mode=0o755)
    log_dir.chmod(0o755)
    logs.setup_logging(log_dir, to_stderr=False)
    assert stat.S_IMODE(log_dir.stat().st_mode) == 0o700


def test_verbose_logs_debug_and_the_file_is_masked(tmp_path: Path) -> None:
    path = logs.setup_logging(tmp_path, to_stderr=False, verbose=True)
    assert path is not None
    assert logging.getLogger().level == logging.DEBUG
    logs.register_secret("debug-secret-value")
    logging.getLogger("k").debug("saw debug-secret-value")
    flush()
    assert path.read_text().splitlines()[-1].endswith(" DEBUG k: saw [redacted]")


def test_a_directory_that_cannot_be_made_means_no_file_but_stderr_still_works(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert logs.setup_logging(blocker / "log", to_stderr=True) is None
    handlers = logging.getLogger().handlers
    assert len(handlers) == 1 and type(handlers[0]) is logging.StreamHandler
    logs.register_secret("stderr-secret-value")
    logging.getLogger("k").warning("on stderr stderr-secret-value")
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.endswith(" WARNING on stderr [redacted]")  # no logger name on stderr
    assert " k: " not in err


def test_setup_replaces_the_handlers_and_quiets_the_http_loggers(tmp_path: Path) -> None:
    for name in ("httpx", "httpcore", "PIL"):  # as a process that never set up logging has them
        logging.getLogger(name).setLevel(logging.NOTSET)
    logs.setup_logging(tmp_path, to_stderr=True)
    logs.setup_logging(tmp_path, to_stderr=True)  # a second call does not double the handlers
    handlers = logging.getLogger().handlers
    assert sorted(type(h).__name__ for h in handlers) == ["PrivateRotatingFileHandler", "StreamHandler"]
    assert all(any(isinstance(f, logs.RedactingFilter) for f in h.filters) for h in handlers)
    assert logging.getLogger().level == logging.INFO
    for name in ("httpx", "httpcore", "PIL"):
        assert logging.getLogger(name).level == logging.WARNING


def test_no_directory_and_no_stderr_means_no_handler() -> None:
    assert logs.setup_logging(None, to_stderr=False) is None
    assert logging.getLogger().handlers == []
