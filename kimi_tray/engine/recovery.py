"""A token the server issued that the credential file has not taken yet, and its recovery file.

The file (0600, in our state directory, never logged) keeps such a token across a crash until the
credential file can be written; it is put in place before any other refresh.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kimi_tray.core.errors import LocalFileError
from kimi_tray.core.private_dir import ensure_private_dir
from kimi_tray.stores.credentials import Credentials, fix_permissions
from kimi_tray.stores.fileio import atomic_write, read_json_object
from kimi_tray.stores.state import fingerprint

log = logging.getLogger(__name__)
RECOVERY_FILE = "unsaved-token.json"


@dataclass(frozen=True)
class Unsaved:
    """A token the server issued that the credential file has not taken yet."""

    access_token: str
    refresh_token: str
    expires_at: float
    expires_in: float
    scope: str
    token_type: str
    replaces: str  # fingerprint of the refresh token it replaced
    reason: str

    def __repr__(self) -> str:
        return f"Unsaved(expires_at={self.expires_at!r}, reason={self.reason!r})"

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, allow_nan=False) + "\n").encode()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Unsaved:
        kept = {name: data[name] for name in cls.__dataclass_fields__}
        if not all(isinstance(kept[k], str) for k in ("access_token", "refresh_token", "replaces")):
            raise TypeError("bad recovery file")
        return cls(**{**kept, "expires_at": float(kept["expires_at"]),
                      "expires_in": float(kept["expires_in"])})


def file_takes(current: Credentials | None, replaced_fp: str, new_refresh: str) -> bool:
    """May a token the server issued for `replaced_fp` replace what the file holds now? Yes
    while the file holds the token it replaced, this token, or no live token (missing, unreadable,
    a tombstone written after a rejection); not over another login or renewal made meanwhile."""
    return (current is None or not current.can_refresh
            or fingerprint(current.refresh_token) == replaced_fp
            or current.refresh_token == new_refresh)


def write_recovery(path: Path, unsaved: Unsaved) -> bool:
    """True when the token is in the file; False when only memory holds it now."""
    try:
        ensure_private_dir(path.parent, tighten=True)
        atomic_write(path, unsaved.to_json())
    except LocalFileError as exc:
        log.error("Could not write the recovery file either (%s); the new token is kept in "
                  "memory only until the credential file can be written.", exc)
        return False
    finally:
        log.error("The new Kimi token is not saved yet: %s", unsaved.reason)
    return True


def read_recovery(path: Path) -> Unsaved | None:
    if not path.exists():
        return None
    fix_permissions(path)  # it holds live tokens
    try:
        data, _ = read_json_object(path)
        return Unsaved.from_json(data)
    except (LocalFileError, KeyError, TypeError, ValueError):
        log.error("The recovery file %s cannot be read; it is left in place.", path)
        return None


def remove_recovery(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:  # a directory in its place, say: the token is saved all the same
        log.warning("Could not remove %s: %s.", path, exc.strerror or exc)
