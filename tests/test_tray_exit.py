"""A tray whose icon loop fails never lingers: it logs why and exits, even though pystray's
setup thread (not a daemon) still waits for a loop that never started."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, kimi_file, write_credentials
from tests.support.oauth_server import FakeKimiOAuth
from tests.test_tray_e2e import tray_env as tray_env  # the same tray settings

pytestmark = pytest.mark.desktop

# pystray's run(): start the setup thread, then the backend's loop, which fails here.
FAILING_LOOP = """
import sys
import pystray._gtk

def broken_loop(self):
    raise RuntimeError("the GTK loop could not start")

pystray._gtk.Icon._run = broken_loop
from kimi_tray.cli.main import main
sys.exit(main([]))
"""


def test_a_failing_icon_loop_is_logged_and_the_process_ends(tray_env: dict[str, str], home: Path,
                                                            oauth_server: FakeKimiOAuth) -> None:
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 880)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", FAILING_LOOP], env=tray_env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    took = time.monotonic() - started
    log = (home / ".local" / "state" / "kimi-tray" / "log" / "kimi-tray.log").read_text()
    assert "The tray icon stopped on an unexpected error" in log
    assert "the GTK loop could not start" in log
    assert done.returncode == 1
    assert took < 20  # the 10 s exit guard, plus start-up
