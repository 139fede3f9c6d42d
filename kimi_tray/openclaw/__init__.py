"""OpenClaw hand-off: the targets (CLI, JSON file under OpenClaw's lock, off), OpenClaw's lock,
and what the user's OpenClaw is (its generation and Kimi plugin, asked from OpenClaw itself)."""

from kimi_tray.openclaw.detect import KIMI_PROVIDERS, PLUGIN_FIX, Detector
from kimi_tray.openclaw.lock import OpenClawLockBusy, openclaw_lock
from kimi_tray.openclaw.targets import (
    AutoTarget,
    CliTarget,
    LegacyFileTarget,
    OffTarget,
    OpenClawTarget,
    Problem,
    Token,
    choose_target,
    legacy_profiles_path,
    mask_matches,
)

__all__ = [
    "KIMI_PROVIDERS", "PLUGIN_FIX", "AutoTarget", "CliTarget", "Detector", "LegacyFileTarget",
    "OffTarget", "OpenClawLockBusy", "OpenClawTarget", "Problem", "Token", "choose_target",
    "legacy_profiles_path", "mask_matches", "openclaw_lock",
]
