"""OpenClaw hand-off: the targets (CLI, JSON file under OpenClaw's lock, off), OpenClaw's lock,
and what the user's OpenClaw is (its generation and Kimi plugin, asked from OpenClaw itself)."""

from kimi_tray.stores.openclaw.base import OpenClawTarget, Problem, Token, mask_matches
from kimi_tray.stores.openclaw.cli_target import CliTarget
from kimi_tray.stores.openclaw.detect import KIMI_PROVIDERS, PLUGIN_FIX, Detector
from kimi_tray.stores.openclaw.file_target import LegacyFileTarget, legacy_profiles_path
from kimi_tray.stores.openclaw.lock import OpenClawLockBusy, openclaw_lock
from kimi_tray.stores.openclaw.off_target import OffTarget
from kimi_tray.stores.openclaw.targets import AutoTarget, choose_target

__all__ = [
    "KIMI_PROVIDERS", "PLUGIN_FIX", "AutoTarget", "CliTarget", "Detector", "LegacyFileTarget",
    "OffTarget", "OpenClawLockBusy", "OpenClawTarget", "Problem", "Token", "choose_target",
    "legacy_profiles_path", "mask_matches", "openclaw_lock",
]
