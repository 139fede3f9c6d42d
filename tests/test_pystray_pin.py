"""kimi-tray reaches into pystray's xorg backend (its private `_window` and `_display`, to make the
menu-less icon take clicks; its message handlers and docking, to dock in a tray that starts after
it); pystray is pinned, and this notices when the pin or the internals move."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def test_pystray_is_pinned_to_the_release_whose_internals_we_patch() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [dep for dep in project["dependencies"] if dep.startswith("pystray")]
    assert pins == ["pystray==0.19.5"]
    assert importlib.metadata.version("pystray") == "0.19.5"


def test_the_private_xorg_attributes_we_patch_still_exist() -> None:
    # Read, not imported: pystray's backends connect to the display when imported.
    spec = importlib.util.find_spec("pystray")
    assert spec is not None and spec.origin is not None
    source = (Path(spec.origin).parent / "_xorg.py").read_text()
    assert re.search(r"self\._display = Xlib\.display\.Display\(\)", source)
    assert re.search(r"self\._window = self\._create_window\(\)", source)
    # The upstream bug we work around: the window is created without ButtonPressMask.
    create = source[source.index("def _create_window"):]
    create = create[: create.index("\n    def ", 1)]
    assert "event_mask=Xlib.X.ExposureMask | Xlib.X.StructureNotifyMask," in create
    assert "ButtonPressMask" not in create


def test_the_private_xorg_docking_we_use_still_exists() -> None:
    """A system tray that appears later is met with pystray's own docking, through its table of
    X event handlers; and pystray itself still docks only when shown or redrawn."""
    spec = importlib.util.find_spec("pystray")
    assert spec is not None and spec.origin is not None
    source = (Path(spec.origin).parent / "_xorg.py").read_text()
    assert "self._message_handlers = {" in source
    assert "self._message_handlers.get(event.type" in source
    assert re.search(r"def _assert_docked\(self\):", source)
    assert re.search(r"self\._net_system_tray_sx = self\._display\.intern_atom\(", source)
    assert "MANAGER" not in source  # the day pystray handles it, our handler can go
