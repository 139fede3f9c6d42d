"""Our own directories (state, log) are private: every layer that creates one goes through here."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from kimi_tray.core.errors import LocalFileError


def ensure_private_dir(directory: Path, tighten: bool = False) -> None:
    """Create a directory (and parents) the way the Kimi CLIs do: mode 0700 for what we create,
    missing parents included (as the XDG base directory spec asks; mkdir's own `parents` would
    leave them to the umask).

    `tighten` also brings an existing directory of ours down to 0700 (older versions made 0755).
    """
    if directory.is_dir():
        if tighten and os.name != "nt":
            with contextlib.suppress(OSError):
                if stat.S_IMODE(directory.stat().st_mode) & 0o077:
                    os.chmod(directory, 0o700)
        return
    try:
        for path in [*(parent for parent in reversed(directory.parents) if not parent.exists()), directory]:
            path.mkdir(mode=0o700, exist_ok=True)
            os.chmod(path, 0o700)
    except OSError as exc:
        raise LocalFileError(f"Could not create {directory}: {exc.strerror or exc}.") from None
