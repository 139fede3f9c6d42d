"""What kimi-tray remembers between runs: a dead refresh token, the last renewal, OpenClaw's view.

Only fingerprints of tokens are kept here, never the tokens.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kimi_tray.errors import LocalFileError
from kimi_tray.fileio import atomic_write, ensure_private_dir, read_json_object

log = logging.getLogger(__name__)


def fingerprint(token: str) -> str:
    """A short, irreversible id of a token: enough to tell two tokens apart, useless to a thief."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:16] if token else ""


@dataclass
class OpenClawView:
    state: str = "unknown"
    detail: str = ""
    mode: str = ""
    token_fp: str = ""
    expires_at: float | None = None
    checked_at: float | None = None


@dataclass
class OpenClawMemory:
    """What we learnt about the user's OpenClaw, so later runs need not ask it again (each
    `openclaw` call costs seconds). Valid only for the OpenClaw `version` it was learnt from."""

    version: str = ""
    generation: str = ""  # "cli" (credentials in SQLite) or "file" (auth-profiles.json)
    store_path: str = ""
    kimi_plugin: bool | None = None  # the Kimi provider plugin is installed
    plugin_checked_at: float | None = None
    call_seconds: float | None = None  # how long `paste-token` took last time


@dataclass
class PersistentState:
    dead_refresh_fp: str = ""
    dead_reason: str = ""
    last_renewal: float | None = None
    openclaw: OpenClawView = field(default_factory=OpenClawView)
    last_forced_login_warning: float | None = None
    openclaw_memory: OpenClawMemory = field(default_factory=OpenClawMemory)


class StateStore:
    def __init__(self, directory: Path) -> None:
        self.path = directory / "state.json"

    def load(self) -> PersistentState:
        if not self.path.exists():
            return PersistentState()
        try:
            data, _ = read_json_object(self.path)
        except LocalFileError as exc:
            log.warning("Ignoring the state file: %s", exc)
            return PersistentState()
        view = data.get("openclaw") if isinstance(data.get("openclaw"), dict) else {}
        known_view = {k: v for k, v in view.items() if k in OpenClawView.__dataclass_fields__}
        known = {k: v for k, v in data.items() if k in PersistentState.__dataclass_fields__}
        known["openclaw"] = OpenClawView(**known_view)
        memory = data.get("openclaw_memory") if isinstance(data.get("openclaw_memory"), dict) else {}
        known["openclaw_memory"] = OpenClawMemory(
            **{k: v for k, v in memory.items() if k in OpenClawMemory.__dataclass_fields__})
        try:
            return PersistentState(**known)
        except TypeError:
            return PersistentState()

    def save(self, state: PersistentState) -> None:
        try:
            ensure_private_dir(self.path.parent)
            payload: dict[str, Any] = asdict(state)
            atomic_write(self.path, (json.dumps(payload, indent=2) + "\n").encode())
        except LocalFileError as exc:
            log.warning("Could not save the state file: %s", exc)
