"""Open a URL in the user's browser and know whether it worked.

`webbrowser.open` says True as soon as it has started xdg-open, even when xdg-open then fails
(no browser installed), and it never waits for it, leaving a zombie. Here the opener runs as a
child we watch for a moment: a quick non-zero exit is a failure we can report; one still running
is a browser that started, and a thread reaps it when it ends.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import threading

SETTLE_SECONDS = 3.0


def opener_command(url: str) -> list[str] | None:
    """The command that opens a URL here: $BROWSER first (as webbrowser does), then the OS's."""
    for entry in filter(None, os.environ.get("BROWSER", "").split(os.pathsep)):
        args = shlex.split(entry)
        if not args or not shutil.which(args[0]):
            continue
        return [a.replace("%s", url) for a in args] if "%s" in entry else [*args, url]
    if sys.platform == "darwin":
        return ["open", url]
    if sys.platform.startswith("linux") or "bsd" in sys.platform:
        opener = shutil.which("xdg-open")
        return [opener, url] if opener else None
    return None


def open_url(url: str, settle: float = SETTLE_SECONDS) -> str:
    """Open url; '' when a browser took it, else one sentence saying why not."""
    command = opener_command(url)
    if command is None:
        if sys.platform.startswith("win"):
            import webbrowser  # only here: it costs the tray about 1.7 MiB for good

            return "" if webbrowser.open(url, new=2) else "No browser could be started."
        return "No browser was found (no $BROWSER and no xdg-open)."
    try:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        return f"{command[0]} could not start ({exc.strerror})."
    try:
        code = child.wait(settle)
    except subprocess.TimeoutExpired:
        threading.Thread(target=_reap, args=(child,), name="browser-reaper", daemon=True).start()
        return ""
    said = child.stderr.read().decode(errors="replace").strip().splitlines() if child.stderr else []
    if child.stderr:
        child.stderr.close()
    if code == 0:
        return ""
    name = os.path.basename(command[0])
    why = said[-1][:120] if said else f"exit {code}"
    return f"The browser did not open ({why if why.startswith(name) else f'{name}: {why}'})."


def _reap(child: subprocess.Popen[bytes]) -> None:
    if child.stderr:
        child.stderr.read()
        child.stderr.close()
    child.wait()
