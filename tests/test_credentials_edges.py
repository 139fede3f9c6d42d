"""The Kimi credential file at more edges: a mode that cannot be tightened is said, with why;
Windows gets neither a chmod nor the TypeScript CLI's directory lock.

Real files in tmp_path; `chattr +i` makes the file refuse the chmod even for root.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from kimi_tray.stores.credentials import (
    PYTHON_CLI,
    TYPESCRIPT_CLI,
    CredentialSource,
    fix_permissions,
)
from kimi_tray.stores.fileio import DirectoryLock, FileLock, NoLock
from tests.conftest import immutable


def test_a_mode_that_cannot_be_tightened_is_warned_about_with_the_cause(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "credentials" / "kimi-code.json"
    path.parent.mkdir()
    path.write_text('{"access_token": "a", "refresh_token": "r", "expires_at": 100}')
    path.chmod(0o644)
    with immutable(path), caplog.at_level(logging.WARNING, logger="kimi_tray.stores.credentials"):
        creds = CredentialSource(path, tmp_path, PYTHON_CLI).load()
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert creds.refresh_token == "r", "the file is still read"
    assert [r.getMessage() for r in caplog.records] == [
        f"{path} was readable by other users (mode 644); changed it to 600.",
        f"Could not change the mode of {path}: Operation not permitted."]
    caplog.clear()
    fix_permissions(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(caplog.records) == 1


def test_on_windows_modes_are_left_alone_and_the_typescript_cli_takes_no_lock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows has no Unix modes to tighten, and the TypeScript CLI's directory lock is not taken
    there (it takes none itself); the Python CLI's file lock still is."""
    path = tmp_path / "credentials" / "kimi-code.json"
    path.parent.mkdir()
    path.write_text("{}")
    path.chmod(0o644)
    typescript = CredentialSource(path, tmp_path, TYPESCRIPT_CLI)
    python = CredentialSource(path, tmp_path, PYTHON_CLI)
    with monkeypatch.context() as patch:
        patch.setattr(os, "name", "nt")
        fix_permissions(path)
        windows_locks = (typescript.lock(1.0), python.lock(1.0))
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert isinstance(windows_locks[0], NoLock) and isinstance(windows_locks[1], FileLock)
    assert isinstance(typescript.lock(1.0), DirectoryLock)
