"""The floor the tray's memory is measured against: a bare pystray GTK icon showing one Pillow
image, nothing else imported. Run by run.py beside the tray."""

from __future__ import annotations

import os

os.environ.setdefault("PYSTRAY_BACKEND", "gtk")

import pystray  # noqa: E402  # after the backend is chosen
from PIL import Image  # noqa: E402


def main() -> None:
    icon = pystray.Icon("bare", Image.new("RGBA", (64, 64), (46, 160, 67, 255)))

    def setup(icon: pystray.Icon) -> None:
        icon.visible = True
        icon.title = "Kimi bare icon"  # GTK names the docked window after it: run.py finds it so

    icon.run(setup=setup)


if __name__ == "__main__":
    main()
