"""Settings for tests that need no Kimi server: a temp HOME and the stand-in `openclaw`, without
the loopback servers of the `env` fixture (stopping those takes a second per test, which mutation
testing would pay for every mutant)."""

from __future__ import annotations

import os
from pathlib import Path

from kimi_tray.core.config import Settings, load_settings


def offline_env(tmp_path: Path) -> dict[str, str]:
    from tests.conftest import write_fake_openclaw

    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    bin_dir = tmp_path / "bin"
    write_fake_openclaw(bin_dir)
    return {
        "HOME": str(home),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "FAKE_OPENCLAW_LOG": str(tmp_path / "openclaw-calls.jsonl"),
        "LANG": "C.UTF-8",
    }


def offline_settings(env: dict[str, str], tmp_path: Path) -> Settings:
    home = Path(env["HOME"])
    return load_settings(env).with_overrides(
        state_dir=home / ".local" / "state" / "kimi-tray",
        log_dir=home / ".local" / "state" / "kimi-tray" / "log",
        openclaw_command=(str(tmp_path / "bin" / "openclaw"),),
    )
