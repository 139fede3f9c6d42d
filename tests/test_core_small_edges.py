"""The small core modules at their edges: private directories, the exit-code table the CLI
prints, and the error tree each caller catches from."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest

from kimi_tray.core import exit_codes
from kimi_tray.core.clock import SystemClock
from kimi_tray.core.errors import (
    ConfigError,
    DeviceFlowError,
    KimiTrayError,
    LocalFileError,
    LockTimeout,
    LoginNeeded,
    OpenClawError,
    TransientError,
)
from kimi_tray.core.private_dir import ensure_private_dir


# ----------------------------------------------------------------------------- private directories
def test_every_directory_made_is_0700_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077 | 0o100)  # even a umask that would take the owner's own x bit
    try:
        ensure_private_dir(tmp_path / "a" / "b")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700  # the parent it made too


def test_a_new_directory_is_never_open_to_others_not_even_before_its_chmod(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Made 0700 by mkdir itself (the usual umask 022 would leave 0755 until the chmod)."""
    from kimi_tray.core import private_dir

    seen: list[int] = []
    real_chmod = os.chmod

    def chmod(path: str | os.PathLike[str], mode: int) -> None:
        seen.append(stat.S_IMODE(os.stat(path).st_mode))
        real_chmod(path, mode)

    old = os.umask(0o022)
    monkeypatch.setattr(private_dir.os, "chmod", chmod)
    try:
        ensure_private_dir(tmp_path / "local" / "state")
    finally:
        os.umask(old)
        monkeypatch.undo()
    assert seen == [0o700, 0o700]


def test_starts_that_make_the_same_directories_at_once_all_succeed(tmp_path: Path) -> None:
    """The tray and a `kimi-tray status` started together both make the state directory:
    whoever loses the race finds it made, which is no error."""
    for round_ in range(20):
        directory = tmp_path / str(round_) / "state" / "kimi-tray"
        start = threading.Barrier(8)
        errors: list[BaseException] = []

        def make(directory: Path = directory, start: threading.Barrier = start,
                 errors: list[BaseException] = errors) -> None:
            start.wait()
            try:
                ensure_private_dir(directory)
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

        threads = [threading.Thread(target=make) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert errors == [] and stat.S_IMODE(directory.stat().st_mode) == 0o700


@pytest.mark.parametrize("mode", [0o710, 0o701, 0o750, 0o770, 0o707])
def test_any_access_for_others_is_tightened(tmp_path: Path, mode: int) -> None:
    directory = tmp_path / "d"
    directory.mkdir()
    directory.chmod(mode)
    ensure_private_dir(directory, tighten=True)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_a_private_directory_is_left_as_it_is(tmp_path: Path) -> None:
    directory = tmp_path / "d"
    directory.mkdir()
    directory.chmod(0o500)  # stricter than 0700: not loosened
    ensure_private_dir(directory, tighten=True)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o500
    directory.chmod(0o700)


def test_a_directory_that_cannot_be_made_is_named_with_the_reason(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(LocalFileError) as caught:
        ensure_private_dir(blocker / "sub")
    assert str(caught.value) == f"Could not create {blocker / 'sub'}: Not a directory."
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


# ----------------------------------------------------------------------------- exit codes
def test_the_help_table_lists_each_code_padded_then_the_notes_wrapped_at_100() -> None:
    text = exit_codes.help_text()
    lines = text.splitlines()
    assert lines[0] == "exit codes:"
    assert lines[1] == "  0   success; for `status`: the token is fresh or ageing"
    assert lines[4] == ("  3   a browser login is needed (refresh token dead, or no credentials): "
                        "run `kimi-tray login`")
    assert lines[5] == "  130 cancelled with Ctrl+C"
    assert lines[6].startswith("  141 the output pipe was closed")
    notes = lines[7:]
    assert " ".join(notes) == exit_codes.NOTES
    assert len(notes) > 1 and all(len(line) <= 100 for line in notes)
    for line, following in zip(notes, notes[1:], strict=False):  # filled up to 100, not fewer
        assert len(line) + 1 + len(following.split()[0]) > 100, line
    assert text.endswith(".\n") and not text.endswith("\n\n")


def test_the_codes_are_the_ones_shells_and_scripts_expect() -> None:
    assert (exit_codes.OK, exit_codes.FAILURE, exit_codes.USAGE, exit_codes.LOGIN_NEEDED,
            exit_codes.CANCELLED, exit_codes.PIPE_CLOSED) == (0, 1, 2, 3, 130, 141)
    assert [code for code, _ in exit_codes.TABLE] == [0, 1, 2, 3, 130, 141]


# ----------------------------------------------------------------------------- errors
def test_each_error_exits_with_its_code() -> None:
    assert KimiTrayError("x").exit_code == 1
    assert LoginNeeded("x").exit_code == 3
    for error in (TransientError, LocalFileError, LockTimeout, ConfigError, OpenClawError, DeviceFlowError):
        assert error("x").exit_code == 1, error
        assert isinstance(error("x"), KimiTrayError)
    assert issubclass(LockTimeout, TransientError)


def test_a_transient_error_carries_its_retry_hints() -> None:
    plain = TransientError("Server busy.")
    assert str(plain) == "Server busy."
    assert (plain.retry_after, plain.maybe_sent) == (None, False)
    hinted = TransientError("Timed out.", retry_after=42.5, maybe_sent=True)
    assert (hinted.retry_after, hinted.maybe_sent) == (42.5, True)
    assert str(hinted) == "Timed out."
    locked = LockTimeout("Held.", retry_after=3.0)
    assert (str(locked), locked.retry_after, locked.maybe_sent) == ("Held.", 3.0, False)


# ----------------------------------------------------------------------------- the system clock
def test_the_system_clock_waits_as_long_as_asked_and_no_longer() -> None:
    clock = SystemClock()
    event = threading.Event()
    started = time.monotonic()
    assert clock.wait(event, 0.05) is False
    assert clock.wait(event, -5.0) is False  # a time already past: no wait, no error
    assert 0.04 <= time.monotonic() - started < 0.5
    event.set()
    assert clock.wait(event, 10.0) is True
    assert abs(clock.now() - time.time()) < 1 and abs(clock.monotonic() - time.monotonic()) < 1
