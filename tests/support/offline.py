"""Settings for tests that need no Kimi server: a temp HOME and the stand-in `openclaw`, without
the loopback servers of the `env` fixture (stopping those takes a second per test, which mutation
testing would pay for every mutant)."""

from __future__ import annotations

from pathlib import Path

from kimi_tray.core.config import Settings


def offline_env(tmp_path: Path) -> dict[str, str]:
    from tests.conftest import local_env

    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return local_env(home, tmp_path)


def offline_settings(env: dict[str, str], tmp_path: Path) -> Settings:
    from tests.conftest import settings_for

    return settings_for(env, tmp_path)
