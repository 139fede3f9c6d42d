"""Regenerate assets/icons/ from the same drawing code as the runtime icon.

Run: `.venv/bin/python scripts/make_icons.py` (tests/test_assets.py checks the files are current).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kimi_tray.core.health import Health, Status  # noqa: E402
from kimi_tray.ui.icons import draw_icon  # noqa: E402

PNG_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)


def app_icon(size: int):
    """The app icon is the fresh state with a full ring."""
    now, lifetime = 1_800_000_000.0, 900.0
    return draw_icon(Status(Health.FRESH, now, expires_at=now + lifetime, lifetime=lifetime), size)


def write_icons(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for size in PNG_SIZES:
        path = directory / f"kimi-tray-{size}.png"
        app_icon(size).save(path, optimize=False)
        written.append(path)
    big = app_icon(512)
    ico = directory / "kimi-tray.ico"
    big.resize((256, 256)).save(ico, sizes=[(s, s) for s in ICO_SIZES],
                                append_images=[app_icon(s) for s in ICO_SIZES])
    icns = directory / "kimi-tray.icns"
    big.save(icns)
    written += [ico, icns]
    return written


if __name__ == "__main__":
    for path in write_icons(ROOT / "assets" / "icons"):
        print(path.relative_to(ROOT))
