"""What kimi-tray remembers between runs: a dead refresh token, the last renewal, OpenClaw's view.

Only fingerprints of tokens are kept here, never the tokens.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from kimi_tray.core.errors import LocalFileError
from kimi_tray.core.private_dir import ensure_private_dir
from kimi_tray.stores.fileio import atomic_write, read_json_object

log = logging.getLogger(__name__)

# CPython's own SHA-256, as its `random` module does for SHA-512: `hashlib` loads OpenSSL's
# libcrypto, about 3.7 MiB resident in the daemon and the tray for one hash of a few bytes.
try:
    from _sha2 import sha256  # type: ignore[import-not-found, unused-ignore]  # Python 3.12+
except ImportError:
    try:
        from _sha256 import sha256  # type: ignore[import-not-found, no-redef, unused-ignore]
    except ImportError:  # pragma: no cover  # a Python built without them
        from hashlib import sha256  # type: ignore[assignment, unused-ignore]


def fingerprint(token: str) -> str:
    """A short, irreversible id of a token: enough to tell two tokens apart, useless to a thief."""
    return sha256(token.encode("utf-8")).hexdigest()[:16] if token else ""


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
    inflight_refresh_fp: str = ""  # a refresh sent whose answer is not saved yet


class StateStore:
    def __init__(self, directory: Path) -> None:
        self.path = directory / "state.json"

    def load(self) -> PersistentState:
        """Read what we remember; a field of the wrong type is dropped with a warning and the
        file rewritten, so one bad value never stops `status` or the tray."""
        if not self.path.exists():
            return PersistentState()
        try:
            data, _ = read_json_object(self.path)
        except LocalFileError as exc:
            log.warning("Ignoring the state file: %s", exc)
            return PersistentState()
        dropped: list[str] = []
        view = data.get("openclaw", {})
        if not isinstance(view, dict):
            dropped.append("openclaw")
            view = {}
        memory = data.get("openclaw_memory", {})
        if not isinstance(memory, dict):
            dropped.append("openclaw_memory")
            memory = {}
        state = PersistentState(**_typed(PersistentState, data, dropped,
                                         skip={"openclaw", "openclaw_memory"}))
        state.openclaw = OpenClawView(**_typed(OpenClawView, view, dropped, prefix="openclaw."))
        state.openclaw_memory = OpenClawMemory(
            **_typed(OpenClawMemory, memory, dropped, prefix="openclaw_memory."))
        if dropped:
            log.warning("Ignored wrong-typed fields in %s (%s); the file is rewritten without them.",
                        self.path, ", ".join(dropped))
            self.save(state)
        return state

    def save(self, state: PersistentState) -> None:
        try:
            ensure_private_dir(self.path.parent)
            payload: dict[str, Any] = asdict(state)
            atomic_write(self.path, (json.dumps(payload, indent=2) + "\n").encode())
        except LocalFileError as exc:
            log.warning("Could not save the state file: %s", exc)


def _typed(cls: type, data: dict[str, Any], dropped: list[str], skip: frozenset[str] | set[str] = frozenset(),
           prefix: str = "") -> dict[str, Any]:
    """The fields of `data` whose values have the type the dataclass declares; others dropped."""
    kept: dict[str, Any] = {}
    for f in fields(cls):
        if f.name in skip or f.name not in data:
            continue
        value = data[f.name]
        if _fits(str(f.type), value):
            kept[f.name] = value
        else:
            dropped.append(prefix + f.name)
    return kept


def _fits(declared: str, value: Any) -> bool:
    if value is None:
        return "None" in declared
    kinds = {part.strip() for part in declared.split("|")}
    if isinstance(value, bool):
        return "bool" in kinds
    if isinstance(value, (int, float)):
        return bool(kinds & {"float", "int"}) and math.isfinite(value)
    if isinstance(value, str):
        return "str" in kinds
    if isinstance(value, dict):
        return any(k.startswith("dict") for k in kinds) or not kinds & {"str", "float", "int", "bool"}
    if isinstance(value, list):
        return any(k.startswith(("list", "tuple")) for k in kinds)
    return False
