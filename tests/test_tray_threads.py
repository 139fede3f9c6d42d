"""Only the UI thread touches pystray: every icon call of a real tray under Xvfb is recorded
with its thread while renewals, an outside change, Renew now, a login and timed redraws happen."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, kimi_file, wait_for, write_credentials
from tests.support.desktop import Desktop
from tests.support.oauth_server import FakeKimiOAuth
from tests.test_tray_e2e import tray_env as tray_env  # the same tray settings

pytestmark = pytest.mark.desktop
SECONDS_LEFT = re.compile(r"^Kimi: \d+ s left")


class RecordedTray:
    def __init__(self, env: dict[str, str], desktop: Desktop, tmp_path: Path, backend: str) -> None:
        self.desktop = desktop
        self.backend = backend
        self.record = tmp_path / f"pystray-calls-{backend}.tsv"
        self.log = tmp_path / f"tray-{backend}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.pystray_threads", str(self.record), "-v"],
            env={**env, "PYSTRAY_BACKEND": backend}, cwd=ROOT,
            stdout=open(self.log, "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
        if not wait_for(lambda: desktop.icon_geometry() is not None, timeout=15):
            self.stop()
            raise AssertionError(f"the icon did not appear:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def calls(self) -> list[list[str]]:
        if not self.record.exists():
            return []
        return [line.split("\t") for line in self.record.read_text().splitlines()]

    def titles(self) -> list[str]:
        return [call[3] for call in self.calls() if call[0] == "title="]

    def showing(self, text: str, timeout: float = 20) -> bool:
        return wait_for(lambda: any(text in title for title in self.titles()[-3:]), timeout=timeout)

    def click_action(self, menu_downs: int) -> None:
        """gtk: the n-th enabled menu item; xorg has no menu: a left click runs the default."""
        geometry = self.desktop.icon_geometry()
        assert geometry is not None
        x, y, w, h = geometry
        where = ["xdotool", "mousemove", str(x + w // 2), str(y + h // 2)]
        if self.backend == "xorg":
            self.desktop.run([*where, "click", "1"])
            return
        self.desktop.run([*where, "click", "3"])
        time.sleep(0.8)
        for _ in range(menu_downs):
            self.desktop.run(["xdotool", "key", "Down"])
            time.sleep(0.1)
        self.desktop.run(["xdotool", "key", "Return"])

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.mark.parametrize("backend", ["gtk", "xorg"])
def test_every_pystray_call_comes_from_the_main_thread(backend: str, tray_env: dict[str, str],
                                                        home: Path, oauth_server: FakeKimiOAuth,
                                                        desktop: Desktop, tmp_path: Path) -> None:
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 880)
    tray = RecordedTray(tray_env, desktop, tmp_path, backend)
    try:
        assert tray.showing("OpenClaw in sync"), tray.output()

        before = oauth_server.successful_refreshes  # Renew now (menu on gtk, a click on xorg)
        for _attempt in range(3):  # the panel may still be laying out its icons
            tray.click_action(menu_downs=1)
            if wait_for(lambda: oauth_server.successful_refreshes > before, timeout=5):
                break
        assert oauth_server.successful_refreshes == before + 1, tray.output()
        # Saved first: an outside write while our answer is still on its way from the child
        # process that sent the request would be overwritten by it (it takes no Kimi lock).
        assert tray.showing("renewed"), tray.titles()[-3:]

        # An outside change leaves under a minute (the engine renews at most every quarter
        # lifetime, so it waits): the tooltip counts the seconds down on timed redraws.
        write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 50)
        assert wait_for(lambda: len({t for t in tray.titles() if SECONDS_LEFT.match(t)}) >= 3,
                        timeout=15), tray.titles()[-5:]

        # The login goes (another program logs out); a login from the icon (menu on gtk, the
        # default click on xorg).
        kimi_file(home).unlink()
        assert tray.showing("login needed"), tray.output()
        oauth_server.device_script = ["pending", "ok"]
        tray.click_action(menu_downs=2)  # Renew now, Log in...
        assert tray.showing("waiting for the browser login", timeout=10), tray.output()
        assert tray.showing("min left", timeout=20), tray.output()
    finally:
        assert tray.stop() == 0, tray.output()

    calls = tray.calls()
    made = {call[0] for call in calls}
    assert {"icon=", "title=", "visible=", "update_menu", "stop"} <= made, made
    elsewhere = sorted({(call[0], call[1]) for call in calls if call[2] != "True"})
    assert elsewhere == [], f"pystray touched from other threads: {elsewhere}"
    assert "Traceback" not in tray.output()
