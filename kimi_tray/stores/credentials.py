"""The Kimi credential file: find it, validate it, and rewrite it the way its owner does."""

from __future__ import annotations

import logging
import math
import os
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kimi_tray.core.config import Settings
from kimi_tray.core.errors import LocalFileError
from kimi_tray.core.private_dir import ensure_private_dir
from kimi_tray.stores.fileio import (
    DirectoryLock,
    FileLock,
    NoLock,
    PreparedWrite,
    atomic_write,
    dump_json_like,
    read_json_object,
    real_path,
    sweep_stale_temps,
)

log = logging.getLogger(__name__)

PYTHON_CLI = "kimi-cli"
TYPESCRIPT_CLI = "kimi-code"
SAVE_RESERVE = 4096
MAX_EXPIRY_AHEAD = 366 * 86400.0  # an expiry further away than a year is a mistake
MILLISECOND_EPOCH = 1e11  # seconds since 1970 reach this in the year 5138; milliseconds did in 1973


@dataclass(frozen=True)
class Credentials:
    access_token: str
    refresh_token: str
    expires_at: float
    expires_in: float | None = None
    scope: str = ""
    token_type: str = "Bearer"
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __repr__(self) -> str:  # never let a token reach a log through repr()
        return f"Credentials(expires_at={self.expires_at!r}, refresh={bool(self.refresh_token)})"

    @property
    def can_refresh(self) -> bool:
        return bool(self.refresh_token)

    def seconds_left(self, now: float) -> float:
        return self.expires_at - now


@dataclass(frozen=True)
class CredentialSource:
    """One credential file and the lock its owning CLI takes before refreshing."""

    path: Path
    home: Path
    owner: str

    def lock(self, timeout: float, disabled: bool = False) -> FileLock | DirectoryLock | NoLock:
        if self.owner == TYPESCRIPT_CLI:
            if disabled or os.name == "nt":
                return NoLock()
            return DirectoryLock(self.home / "oauth" / "kimi-code", timeout=timeout)
        return FileLock(self.path.with_name("kimi-code.lock"), timeout=timeout)

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self, fix_mode: bool = True) -> Credentials:
        data, _ = read_json_object(self.path)
        if fix_mode:
            fix_permissions(self.path)
        return parse_credentials(self.path, data)

    def prepare_save(self) -> PreparedWrite:
        """Prove before a refresh that its answer can be saved: a rotated token we cannot save is
        lost. Raises LocalFileError naming the cause (full disk, immutable file, directory...)."""
        try:
            size = self.path.stat().st_size
        except OSError:
            size = 0
        try:
            ensure_private_dir(self.path.parent)
            prepared = PreparedWrite(self.path, max(SAVE_RESERVE, 2 * size))
        except LocalFileError as exc:
            raise LocalFileError(
                f"{exc} The token was not refreshed, so nothing is lost; fix this and renew again."
            ) from None
        prepared.base = self._read_existing()  # read now, so only the rename is left afterwards
        return prepared

    def _read_existing(self) -> tuple[dict[str, Any], bytes | None]:
        if self.path.exists():
            try:
                return read_json_object(self.path)
            except LocalFileError:
                pass
        return {}, None

    def save(self, access_token: str, refresh_token: str, expires_at: float, expires_in: float,
             scope: str = "", token_type: str = "Bearer",
             prepared: PreparedWrite | None = None) -> Credentials:
        """Write new tokens, keeping every field we do not own (for both owners; see README)."""
        base = prepared.base if prepared is not None and prepared.base is not None else None
        existing, original = base if base is not None else self._read_existing()
        # The TypeScript CLI reads expires_at as integer seconds; its own writes drop foreign
        # fields, ours keep them (nothing of another program's is removed by us).
        stored_expiry: float = int(expires_at) if self.owner == TYPESCRIPT_CLI else float(expires_at)
        updated = dict(existing)
        updated.update(
            access_token=access_token,
            refresh_token=refresh_token,
            expires_at=stored_expiry,
            scope=scope or existing.get("scope", ""),
            token_type=token_type or existing.get("token_type", "Bearer"),
            expires_in=expires_in,
        )
        data = dump_json_like(updated, original)
        if prepared is None:
            ensure_private_dir(self.path.parent)
            atomic_write(self.path, data)
        else:
            prepared.commit(data, rename_first=True)
        return parse_credentials(self.path, updated)

    def sweep_temp_files(self) -> None:
        """Temp files of a writer killed mid-write hold tokens: remove them after a minute."""
        for directory in {self.path.parent, real_path(self.path).parent}:
            if sweep_stale_temps(directory, real_path(self.path).name) or sweep_stale_temps(
                    directory, self.path.name):
                log.info("Removed stale temporary files in %s.", directory)


def parse_credentials(path: Path, data: Mapping[str, Any]) -> Credentials:
    """Validate field types; a tombstone (empty tokens) is a valid file that needs a login."""

    def text(key: str, required: bool = True) -> str:
        value = data.get(key)
        if value is None:
            if required:
                raise LocalFileError(f"{path} has no {key!r} field; log in again to recreate it.")
            return ""
        if not isinstance(value, str):
            raise LocalFileError(f"{path}: {key!r} must be a string, not {type(value).__name__}.")
        return value

    expires_at = data.get("expires_at")
    if expires_at is None:
        raise LocalFileError(f"{path} has no 'expires_at' field; log in again to recreate it.")
    if isinstance(expires_at, bool) or not isinstance(expires_at, (int, float)):
        raise LocalFileError(
            f"{path}: 'expires_at' must be a number of epoch seconds, not {type(expires_at).__name__}."
        )
    problem = expiry_problem(float(expires_at))
    if problem:
        raise LocalFileError(f"{path}: 'expires_at' {problem}; log in again to recreate the file.")
    expires_in = data.get("expires_in")
    if (isinstance(expires_in, bool) or not isinstance(expires_in, (int, float))
            or not math.isfinite(expires_in) or not 0 < expires_in <= MAX_EXPIRY_AHEAD):
        expires_in = None
    return Credentials(
        access_token=text("access_token"),
        refresh_token=text("refresh_token"),
        expires_at=float(expires_at),
        expires_in=float(expires_in) if expires_in is not None else None,
        scope=text("scope", required=False),
        token_type=text("token_type", required=False) or "Bearer",
        raw=dict(data),
    )


def expiry_problem(expires_at: float, now: float | None = None) -> str:
    """Why an `expires_at` cannot be right, or "" (0 is a tombstone: valid, login needed)."""
    if not math.isfinite(expires_at):
        return f"is {expires_at!r}, not a finite number"
    if expires_at < 0:
        return f"is negative ({expires_at:g})"
    if expires_at >= MILLISECOND_EPOCH:
        return f"looks like milliseconds ({expires_at:.0f}), not epoch seconds"
    if expires_at > (time.time() if now is None else now) + MAX_EXPIRY_AHEAD:
        return f"is more than a year away ({expires_at:.0f})"
    return ""


def fix_permissions(path: Path) -> None:
    """A token file readable by others is a leak: warn and tighten it to 0600."""
    if os.name == "nt":
        return
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return
    if mode & 0o077:
        log.warning("%s was readable by other users (mode %o); changed it to 600.", path, mode)
        try:
            os.chmod(path, 0o600)
        except OSError as exc:
            log.warning("Could not change the mode of %s: %s.", path, exc.strerror)


def candidate_sources(settings: Settings) -> list[CredentialSource]:
    if settings.credentials_file is not None:
        path = settings.credentials_file
        home = path.parent.parent
        owner = TYPESCRIPT_CLI if _is_within(path, settings.kimi_code_home) else PYTHON_CLI
        return [CredentialSource(path, home, owner)]
    return [
        CredentialSource(
            settings.kimi_share_dir / "credentials" / "kimi-code.json", settings.kimi_share_dir,
            PYTHON_CLI,
        ),
        CredentialSource(
            settings.kimi_code_home / "credentials" / "kimi-code.json", settings.kimi_code_home,
            TYPESCRIPT_CLI,
        ),
    ]


def choose_source(settings: Settings) -> CredentialSource:
    """Manage the file with a live refresh token and the latest expiry; ~/.kimi when none exists."""
    candidates = candidate_sources(settings)
    existing = [c for c in candidates if c.exists()]
    if not existing:
        return candidates[0]
    scored: list[tuple[int, float, int, CredentialSource]] = []
    for order, source in enumerate(existing):
        try:
            creds = source.load(fix_mode=False)
            scored.append((1 if creds.can_refresh else 0, creds.expires_at, -order, source))
        except LocalFileError:
            scored.append((-1, 0.0, -order, source))
    return max(scored, key=lambda item: item[:3])[3]


def _is_within(path: Path, directory: Path) -> bool:
    try:
        path.resolve().relative_to(directory.resolve())
        return True
    except ValueError:
        return False


def device_id(home: Path) -> str:
    """The Kimi CLIs' persistent device id (32 hex chars), created once with mode 0600."""
    path = home / "device_id"
    try:
        value = path.read_text(encoding="utf-8").strip()
        if value:
            return value
    except OSError:
        pass
    import uuid

    value = uuid.uuid4().hex
    try:
        ensure_private_dir(home)
        atomic_write(path, value.encode())
    except LocalFileError as exc:
        log.warning("%s", exc)
    return value
