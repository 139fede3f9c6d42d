"""Adjustments for the one-file binary: GTK's typelibs come from the system, not the bundle."""

from __future__ import annotations

import os
import sys
from pathlib import Path

SYSTEM_TYPELIB_DIRS = (
    "/usr/lib/x86_64-linux-gnu/girepository-1.0",
    "/usr/lib/aarch64-linux-gnu/girepository-1.0",
    "/usr/lib64/girepository-1.0",
    "/usr/lib/girepository-1.0",
)


def prepare() -> None:
    if not getattr(sys, "frozen", False) or not sys.platform.startswith("linux"):
        return
    found = [d for d in SYSTEM_TYPELIB_DIRS if Path(d).is_dir()]
    bundled = os.environ.get("GI_TYPELIB_PATH", "")
    os.environ["GI_TYPELIB_PATH"] = os.pathsep.join([*found, *filter(None, bundled.split(os.pathsep))])
