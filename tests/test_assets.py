"""The committed icons are what the drawing code makes today."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from scripts.make_icons import ICO_SIZES, PNG_SIZES, write_icons

ICONS = Path(__file__).resolve().parent.parent / "assets" / "icons"


def test_committed_icons_are_current(tmp_path: Path) -> None:
    write_icons(tmp_path)
    for size in PNG_SIZES:
        name = f"kimi-tray-{size}.png"
        committed, fresh = Image.open(ICONS / name), Image.open(tmp_path / name)
        assert committed.size == (size, size)
        assert committed.tobytes() == fresh.tobytes(), f"{name} is stale: run scripts/make_icons.py"
    ico = Image.open(ICONS / "kimi-tray.ico")
    assert {s for s, _ in ico.info["sizes"]} >= set(ICO_SIZES)
    assert Image.open(ICONS / "kimi-tray.icns").size[0] >= 256
