"""What the user's OpenClaw is, asked from OpenClaw itself and remembered per OpenClaw version.

Not from files lying around: OpenClaw 2026.6.1 creates `state/openclaw.sqlite` on any writing
command (a gateway restart too) while it still keeps credentials in `auth-profiles.json`. What
decides is the store OpenClaw reports (`models status --json` -> `auth.storePath`: a `.json` file
on 2026.6.x, an `.sqlite` database on 2026.9.x), cached with `openclaw --version`.
"""

from __future__ import annotations

import logging
from typing import Any

from kimi_tray.core.errors import OpenClawError
from kimi_tray.stores.openclaw.runner import Runner
from kimi_tray.stores.state import OpenClawMemory

log = logging.getLogger(__name__)

KIMI_PROVIDERS = ("kimi", "kimi-coding", "kimi-code")  # OpenClaw's provider id and its aliases
KIMI_PLUGIN_PACKAGE = "@openclaw/kimi-provider"
PLUGIN_FIX = f"openclaw plugins install {KIMI_PLUGIN_PACKAGE}"
# A missing plugin is asked about again after this long (about every other renewal), so that
# installing it is noticed without a `plugins list` before every paste.
PLUGIN_RECHECK = 15 * 60.0


def generation_of(store_path: str) -> str | None:
    if store_path.endswith(".json"):
        return "file"
    if store_path.endswith(".sqlite"):
        return "cli"
    return None


def sanitize(memory: OpenClawMemory) -> OpenClawMemory:
    """A hand-edited or older state file must not break detection: drop values of a wrong type."""
    if not isinstance(memory.version, str) or memory.generation not in ("cli", "file"):
        memory.version, memory.generation, memory.store_path = "", "", ""
    if not isinstance(memory.store_path, str):
        memory.store_path = ""
    if not isinstance(memory.kimi_plugin, bool):
        memory.kimi_plugin = None
    for name in ("plugin_checked_at", "call_seconds"):
        value = getattr(memory, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            setattr(memory, name, None)
    return memory


class Detector:
    """Asks OpenClaw what it is once per version; the answers live in our state file."""

    def __init__(self, runner: Runner, memory: OpenClawMemory) -> None:
        self.runner = runner
        self.memory = sanitize(memory)

    def generation(self) -> str:
        """"cli" or "file", from the store OpenClaw reports; cached while the version holds."""
        memory = self.memory
        try:
            version = self.runner.version()
        except OpenClawError as exc:
            if not memory.generation:
                raise
            # A broken or missing CLI must not stop the JSON file from being kept current.
            log.warning("%s Using what %s said before: %s.", exc, memory.version or "OpenClaw",
                        memory.generation)
            return memory.generation
        if memory.version == version and memory.generation:
            return memory.generation
        report = self.runner.json(["models", "status", "--json"])
        store = str((report.get("auth") or {}).get("storePath") or "")
        generation = generation_of(store)
        if generation is None:
            raise OpenClawError(
                f"{version} did not say where it keeps credentials (no auth.storePath in "
                "`openclaw models status --json`); set openclaw_mode to cli or file.")
        memory.version, memory.generation, memory.store_path = version, generation, store
        memory.kimi_plugin, memory.plugin_checked_at = None, None
        return generation

    def kimi_plugin(self, now: float, fresh: bool = False) -> bool:
        """Is a Kimi provider plugin installed and enabled? Cached: a present plugin for the
        version, a missing one for PLUGIN_RECHECK seconds (asking costs about a second)."""
        memory = self.memory
        if not fresh and memory.kimi_plugin is True:
            return True
        checked = memory.plugin_checked_at
        if (not fresh and memory.kimi_plugin is False and checked is not None
                and 0 <= now - checked < PLUGIN_RECHECK):
            return False
        present = kimi_plugin_listed(self.runner.json(["plugins", "list", "--json"]))
        memory.kimi_plugin, memory.plugin_checked_at = present, now
        return present


def kimi_plugin_listed(report: dict[str, Any]) -> bool:
    for plugin in report.get("plugins") or []:
        if not isinstance(plugin, dict):
            continue
        providers = plugin.get("providerIds") or []
        if plugin.get("enabled") is not False and any(p in KIMI_PROVIDERS for p in providers):
            return True
    return False
