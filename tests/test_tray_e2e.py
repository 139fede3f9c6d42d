"""The tray end to end: a real X tray host, a real notification daemon, real clicks, screenshots."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from kimi_tray.ui.icons import COLOURS
from tests.conftest import ROOT, have, kimi_file, read_json, require, wait_for, write_credentials
from tests.support.desktop import Desktop, missing_tools
from tests.support.oauth_server import FakeKimiOAuth

pytestmark = pytest.mark.desktop
SHOTS = ROOT / ".artifacts" / "screenshots"


@pytest.fixture
def tray_env(env: dict[str, str], desktop: Desktop, tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "config.toml"
    # Usage lines would add live menu items and shift the Down-key counts below; the usage menu
    # has its own test (test_tray_usage_e2e.py).
    config.write_text("poll_interval = 0.5\ntray_poll_interval = 0.5\nusage_enabled = false\n")
    browser = tmp_path / "browser"
    browser.write_text(f"#!/bin/sh\necho \"$1\" >> {tmp_path / 'browser.log'}\n")
    browser.chmod(0o755)
    return {**os.environ, **env, **desktop.env, "KIMI_TRAY_CONFIG": str(config),
            "BROWSER": str(browser), "PYSTRAY_BACKEND": "gtk"}


class Tray:
    def __init__(self, env: dict[str, str], desktop: Desktop, log: Path) -> None:
        self.desktop = desktop
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "kimi_tray", "-v"], env=env, cwd=ROOT,
                                     stdout=open(log, "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
        self.started = time.monotonic()
        if not wait_for(lambda: desktop.icon_geometry() is not None, timeout=15):
            self.stop()  # never leave a tray behind a failed test
            raise AssertionError(f"the icon did not appear:\n{self.output()}")
        self.visible_after = time.monotonic() - self.started

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def geometry(self) -> tuple[int, int, int, int]:
        geometry = self.desktop.icon_geometry()
        assert geometry is not None
        return geometry

    def state(self, shot: Path) -> str:
        """Which state's colour dominates the docked icon's pixels in a real screenshot."""
        x, y, w, h = self.geometry()
        self.desktop.screenshot(shot)
        raw = Image.open(shot).convert("RGB").crop((x, y, x + w, y + h)).tobytes()
        counts = dict.fromkeys(COLOURS, 0)
        for pixel in zip(raw[0::3], raw[1::3], raw[2::3], strict=True):
            for name, colour in COLOURS.items():
                if sum(abs(a - b) for a, b in zip(pixel, colour, strict=True)) < 60:
                    counts[name] += 1
        return max(counts, key=counts.get) if max(counts.values()) > 40 else "none"

    def wait_state(self, expected: str, shot: Path, timeout: float = 20) -> str:
        seen = ""

        def check() -> bool:
            nonlocal seen
            seen = self.state(shot)
            return seen == expected

        wait_for(check, timeout=timeout, interval=0.3)
        return seen

    def menu(self, downs: int, shot: Path | None = None) -> None:
        """Right-click the icon, move down to the n-th enabled item, press Return."""
        x, y, w, h = self.geometry()
        self.desktop.run(["xdotool", "mousemove", str(x + w // 2), str(y + h // 2), "click", "3"])
        time.sleep(0.8)
        for _ in range(downs):
            self.desktop.run(["xdotool", "key", "Down"])
            time.sleep(0.1)
        if shot is not None:
            self.desktop.screenshot(shot)
        self.desktop.run(["xdotool", "key", "Return"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def tray_factory(tray_env, desktop, tmp_path) -> Iterator:
    trays: list[Tray] = []

    def start() -> Tray:
        tray = Tray(tray_env, desktop, tmp_path / f"tray{len(trays)}.log")
        trays.append(tray)
        return tray

    yield start
    for tray in trays:
        tray.stop()


def zombie_children(pid: int) -> list[str]:
    """Children of pid that exited and were never waited for (state Z in /proc)."""
    zombies = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == str(pid) and fields[0] == "Z":
            zombies.append(stat.parent.name)
    return zombies


def crop_panel(shot: Path, out: Path, box=(624, 0, 1024, 250)) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    Image.open(shot).crop(box).save(out)


def test_icon_docks_green_and_turns_red_when_the_token_expires(tray_factory, home, oauth_server,
                                                                 desktop, tmp_path) -> None:
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 880)
    tray = tray_factory()
    shot = tmp_path / "fresh.png"
    assert tray.wait_state("fresh", shot) == "fresh"
    crop_panel(shot, SHOTS / "tray-fresh.png", (784, 0, 1024, 48))
    # The server goes down and another program leaves a token that is about to run out.
    oauth_server.fail_always("503")
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 6)
    assert tray.wait_state("expired", tmp_path / "expired.png", timeout=30) == "expired"
    assert wait_for(lambda: "Kimi token renewal failing" in desktop.notifications(), timeout=10)
    oauth_server.clear_faults()
    assert "Traceback" not in tray.output()


def test_dead_refresh_token_notifies_once_and_its_log_in_button_fixes_it(
        tray_factory, home, oauth_server: FakeKimiOAuth, desktop, tmp_path, env) -> None:
    tokens = oauth_server.issue()
    write_credentials(kimi_file(home), tokens, time.time() + 200)  # due for renewal
    oauth_server.revoke_all()
    tray = tray_factory()
    shot = tmp_path / "login.png"
    assert tray.wait_state("needs_login", shot) == "needs_login"
    assert wait_for(lambda: desktop.notify_calls("Kimi login needed"), timeout=10)
    crop_panel(shot, SHOTS / "tray-needs-login.png", (784, 0, 1024, 48))
    time.sleep(2)
    calls = desktop.notify_calls("Kimi login needed")
    assert len(calls) == 1, "once per episode"
    assert 'string "login"' in calls[0] and 'string "Log in"' in calls[0], "a Log in button"

    oauth_server.device_script = ["pending", "ok"]
    desktop.press_button("Log in")  # dunst emits ActionInvoked(id, "login") on the bus
    assert wait_for(lambda: "member=ActionInvoked" in desktop.notifications(), timeout=5)
    assert wait_for(lambda: (tmp_path / "browser.log").exists(), timeout=15), tray.output()
    url = (tmp_path / "browser.log").read_text().strip()
    assert url.startswith(oauth_server.url + "/device?user_code=CODE-")
    assert tray.wait_state("fresh", tmp_path / "after.png", timeout=30) == "fresh"
    assert wait_for(lambda: desktop.notify_calls("Kimi login done"), timeout=10)
    time.sleep(1.5)
    assert not desktop.notify_calls("Kimi login restored"), "one login, one notification when done"
    assert len(desktop.notify_calls("Kimi login done")) == 1
    new = read_json(kimi_file(home))
    assert new["refresh_token"] in oauth_server.valid_refresh
    notifications = desktop.notifications()
    for secret in (tokens["refresh_token"], new["refresh_token"], new["access_token"]):
        assert secret not in notifications and secret not in tray.output()


def test_login_from_the_menu_with_a_browser_that_fails(tray_factory, home, oauth_server, desktop,
                                                       tmp_path, tray_env) -> None:
    """The URL and code are in the menu and the notification; the failure is said; no zombie."""
    # A desktop without a browser: xdg-open is there, and fails (as it does with nothing to open).
    bin_dir = tmp_path / "no-browser-bin"
    bin_dir.mkdir()
    (bin_dir / "xdg-open").write_text("#!/bin/sh\necho 'xdg-open: no method available for opening' >&2\n"
                                      "exit 3\n")
    (bin_dir / "xdg-open").chmod(0o755)
    tray_env.pop("BROWSER")
    tray_env["PATH"] = f"{bin_dir}{os.pathsep}{tray_env['PATH']}"
    tray = tray_factory()
    assert tray.wait_state("needs_login", tmp_path / "none.png") == "needs_login"
    oauth_server.device_script = ["pending"] * 100
    tray.menu(downs=2)  # Renew now, Log in...
    assert wait_for(lambda: desktop.notify_calls("Kimi login: open the link"), timeout=15), tray.output()
    call = desktop.notify_calls("Kimi login: open the link")[0]
    assert "The browser did not open (xdg-open: no method available for opening)" in call
    assert f"{oauth_server.url}/device?user_code=CODE-" in call and "confirm the code CODE-" in call
    assert "Kimi: waiting for the browser login" in desktop.windows()
    x, y, w, h = tray.geometry()
    desktop.run(["xdotool", "mousemove", str(x + w // 2), str(y + h // 2), "click", "3"])
    time.sleep(0.8)
    desktop.screenshot(tmp_path / "menu-code.png")
    desktop.run(["xdotool", "key", "Escape"])
    crop_panel(tmp_path / "menu-code.png", SHOTS / "tray-menu-login-code.png", (524, 0, 1024, 300))
    assert zombie_children(tray.proc.pid) == []
    code = call.split("confirm the code ", 1)[1].split(".", 1)[0]
    tray.menu(downs=1)  # "Login code ... (click to copy)"
    read = ("import gi; gi.require_version('Gtk', '3.0'); from gi.repository import Gdk, Gtk; "
            "print(Gtk.Clipboard.get(Gdk.SELECTION_CLIPBOARD).wait_for_text())")

    def clipboard() -> str:
        return desktop.run([sys.executable, "-c", read]).stdout.strip()

    assert wait_for(lambda: clipboard() == code, timeout=10, interval=0.5), (code, clipboard())
    assert not desktop.notify_calls("Kimi login")  # not "The browser opened"


def test_corrupt_credential_file_is_said_once_and_log_in_fixes_it(tray_factory, home, oauth_server,
                                                                 desktop, tmp_path) -> None:
    path = kimi_file(home)
    path.parent.mkdir(parents=True, mode=0o700)
    path.write_text('{"access_token": "a", "refresh_token": "b", "expires_at": 1.0, oops}\n')
    tray = tray_factory()
    assert tray.wait_state("error", tmp_path / "error.png") == "error"
    assert wait_for(lambda: desktop.notify_calls("Kimi credentials unreadable"), timeout=10)
    time.sleep(2)
    calls = desktop.notify_calls("Kimi credentials unreadable")
    assert len(calls) == 1 and 'string "Log in"' in calls[0] and 'string "Open log"' in calls[0]
    assert "~/.kimi/credentials/kimi-code.json is not valid JSON. Log in again" in calls[0], calls[0]
    assert "line 1" not in calls[0], "details stay in the log"
    log_text = "".join(p.read_text() for p in (home / ".local" / "state" / "kimi-tray").rglob("*.log"))
    assert log_text.count("The credential file cannot be used") == 1
    assert "Kimi: ~/.kimi/credentials/kimi-code.json is not valid JSON" in desktop.windows()
    oauth_server.device_script = ["ok"]
    tray.menu(downs=1, shot=tmp_path / "menu-error.png")  # Renew now is off here: Log in...
    crop_panel(tmp_path / "menu-error.png", SHOTS / "tray-menu-error.png", (524, 0, 1024, 300))
    assert tray.wait_state("fresh", tmp_path / "fixed.png", timeout=30) == "fresh", tray.output()
    assert read_json(path)["refresh_token"] in oauth_server.valid_refresh


def test_bad_config_starts_with_defaults_says_so_once_and_sigterm_stops_cleanly(
        tray_env, home, oauth_server, desktop, tmp_path) -> None:
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 880)
    Path(tray_env["KIMI_TRAY_CONFIG"]).write_text("poll_intervall = 5\n")
    tray = Tray(tray_env, desktop, tmp_path / "bad-config.log")
    try:
        assert tray.wait_state("fresh", tmp_path / "fresh.png") == "fresh"
        assert wait_for(lambda: desktop.notify_calls("kimi-tray config error"), timeout=10)
        call = desktop.notify_calls("kimi-tray config error")[0]
        assert "Unknown key 'poll_intervall'" in call and 'string "Open config"' in call
        assert "| config error, defaults in use" in desktop.windows()
        # The icon says so too: a grey badge on the health colour.
        x, y, w, h = tray.geometry()
        raw = Image.open(tmp_path / "fresh.png").convert("RGB").crop((x, y, x + w, y + h)).tobytes()
        grey = sum(1 for i in range(0, len(raw), 3)
                   if sum(abs(a - b) for a, b in zip(raw[i:i + 3], COLOURS["error"], strict=True)) < 30)
        assert grey > 20, grey
        crop_panel(tmp_path / "fresh.png", SHOTS / "tray-config-error.png", (784, 0, 1024, 48))
        log_text = "".join(p.read_text() for p in (home / ".local" / "state" / "kimi-tray").rglob("*.log"))
        assert log_text.count("Unknown key 'poll_intervall'") == 1
        x, y, w, h = tray.geometry()
        desktop.run(["xdotool", "mousemove", str(x + w // 2), str(y + h // 2), "click", "3"])
        time.sleep(0.8)
        desktop.screenshot(tmp_path / "menu-config.png")
        desktop.run(["xdotool", "key", "Escape"])
        crop_panel(tmp_path / "menu-config.png", SHOTS / "tray-menu-config-error.png", (0, 0, 1024, 300))
        time.sleep(1)
        assert len(desktop.notify_calls("kimi-tray config error")) == 1
        tray.proc.send_signal(signal.SIGTERM)  # what a logout does
        assert tray.proc.wait(15) == 0
        assert "Stopping (signal 15)." in tray.output() and "tray stopped." in tray.output()
    finally:
        tray.stop()


@pytest.mark.parametrize("backend", ["xorg", "gtk"])
def test_icon_docks_when_the_panel_starts_after_it(tray_env, home, oauth_server, tmp_path,
                                                   backend) -> None:
    """At login the panel may start after kimi-tray. pystray's xorg backend docks only when the
    icon is shown or its picture changes, so it stayed invisible until the next state change;
    it now docks when the panel announces itself (the system tray spec's MANAGER message)."""
    require(not missing_tools(), "the desktop test tools")
    (tmp_path / "late").mkdir()
    session = Desktop(tmp_path / "late").start(tray_host=False)
    try:
        write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 880)
        tray = Tray({**tray_env, **session.env, "PYSTRAY_BACKEND": backend}, session,
                    tmp_path / "late.log")
        try:
            time.sleep(1)  # the icon has tried to dock and found no panel
            assert not _docked(tray.geometry()), tray.geometry()
            session.start_tray_host()
            assert wait_for(lambda: _docked(session.icon_geometry()), timeout=5), \
                (session.icon_geometry(), tray.output())
            assert tray.wait_state("fresh", tmp_path / "late.png", timeout=5) == "fresh"
        finally:
            tray.stop()
    finally:
        session.stop()


def _docked(geometry: tuple[int, int, int, int] | None) -> bool:
    """Inside trayer's panel (the top right 240 x 48 of a 1024 px wide screen); None: the
    window was not listed at that moment (being reparented)."""
    if geometry is None:
        return False
    x, y, w, h = geometry
    return x >= 784 and y < 48 and w >= 16 and h >= 16


def test_no_tray_host_is_said_once_and_renewal_goes_on(env, home, oauth_server, tmp_path) -> None:
    require(not missing_tools(), "the desktop test tools")
    (tmp_path / "bare").mkdir()
    session = Desktop(tmp_path / "bare").start(tray_host=False)  # no trayer, no watcher
    try:
        config = tmp_path / "config.toml"
        config.write_text("poll_interval = 0.5\ntray_poll_interval = 0.5\n")
        write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 200)  # due
        tray_env = {**os.environ, **env, **session.env, "KIMI_TRAY_CONFIG": str(config),
                    "PYSTRAY_BACKEND": "gtk", "KIMI_TRAY_HOST_GRACE": "1"}
        log = tmp_path / "no-host.log"
        proc = subprocess.Popen([sys.executable, "-m", "kimi_tray", "-v"], env=tray_env, cwd=ROOT,
                                stdout=open(log, "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
        try:
            assert wait_for(lambda: session.notify_calls("kimi-tray icon not visible"), timeout=20), \
                log.read_text()
            assert "Add a system tray" in session.notify_calls("kimi-tray icon not visible")[0]
            assert wait_for(lambda: oauth_server.successful_refreshes >= 1, timeout=15)
            time.sleep(2)
            assert len(session.notify_calls("kimi-tray icon not visible")) == 1
            assert proc.poll() is None, "it keeps running"
        finally:
            proc.terminate()
            proc.wait(15)
    finally:
        session.stop()


def test_tooltip_follows_the_clock_while_renewal_fails(tray_env, home, oauth_server, desktop,
                                                       tmp_path) -> None:
    """With the engine asleep between retries, the tooltip still shows the real time left."""
    Path(tray_env["KIMI_TRAY_CONFIG"]).write_text("")  # the default: the engine wakes each minute
    oauth_server.fail_always("503")
    expires_at = time.time() + 66
    write_credentials(kimi_file(home), oauth_server.issue(), expires_at)
    tray = Tray(tray_env, desktop, tmp_path / "clock.log")
    try:
        seen: list[tuple[float, str]] = []
        pattern = re.compile(r'"Kimi: (\d+) (s|min) left')
        deadline = time.time() + 14
        while time.time() < deadline:
            match = pattern.search(desktop.windows())
            if match:
                seen.append((expires_at - time.time(), match.group(0)))
                shown = int(match.group(1)) * (60 if match.group(2) == "min" else 1)
                left = expires_at - time.time()
                step = 60 if match.group(2) == "min" else 1
                assert shown - 2 <= left < shown + step + 2, (left, match.group(0), tray.output())
            time.sleep(0.4)
        assert any(text.endswith(" s left") for _, text in seen), seen
    finally:
        tray.stop()


def test_menu_renew_now_start_on_login_and_single_instance(tray_factory, home, oauth_server,
                                                           desktop, tray_env, tmp_path) -> None:
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 880)
    tray = tray_factory()
    assert wait_for(lambda: "OpenClaw in sync" in desktop.windows(), timeout=20), tray.output()
    before = oauth_server.successful_refreshes
    tray.menu(downs=1, shot=tmp_path / "menu.png")  # Renew now
    crop_panel(tmp_path / "menu.png", SHOTS / "tray-menu.png")
    assert wait_for(lambda: oauth_server.successful_refreshes == before + 1, timeout=10)
    # Saved and shown (the request runs in a child process: the answer takes a moment more to
    # arrive than the server's count); while it is in flight the menu shows it renewing.
    assert wait_for(lambda: "renewed" in desktop.windows() and "in sync" in desktop.windows(),
                    timeout=10), tray.output()

    entry = home / ".config" / "autostart" / "kimi-tray.desktop"
    assert not entry.exists()
    tray.menu(downs=4)  # Renew now, Restart OpenClaw gateway, Open log, Start on login
    assert wait_for(entry.exists, timeout=5)
    if have("desktop-file-validate"):
        check = subprocess.run(["desktop-file-validate", str(entry)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    tray.menu(downs=4)
    assert wait_for(lambda: not entry.exists(), timeout=5), "unchecking removes the entry"

    second = subprocess.run([sys.executable, "-m", "kimi_tray"], env=tray_env, cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert second.returncode == 0 and "already running" in second.stdout
    tray.menu(downs=5)  # Quit
    assert tray.proc.wait(10) == 0


def test_restart_gateway_shows_progress_at_once_and_a_whole_sentence_when_done(
        tray_env, home, oauth_server, desktop, tmp_path) -> None:
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 880)
    tray = Tray({**tray_env, "FAKE_OPENCLAW_RESTART_SECONDS": "4"}, desktop, tmp_path / "restart.log")
    try:
        assert wait_for(lambda: "OpenClaw in sync" in desktop.windows(), timeout=20), tray.output()
        tray.menu(downs=2)  # Renew now, Restart OpenClaw gateway (Log in... is off)
        started = time.monotonic()
        assert wait_for(lambda: "Restarting the OpenClaw gateway..." in desktop.windows(), timeout=2)
        assert time.monotonic() - started < 2
        assert wait_for(lambda: desktop.notify_calls("OpenClaw gateway"), timeout=15), tray.output()
        assert 'string "OpenClaw gateway restarted."' in desktop.notify_calls("OpenClaw gateway")[0]
        assert wait_for(lambda: "Restarting the OpenClaw" not in desktop.windows(), timeout=3)
    finally:
        tray.stop()


def test_no_display_points_at_the_daemon(env) -> None:
    clean = {k: v for k, v in env.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    result = subprocess.run([sys.executable, "-m", "kimi_tray"], env=clean, cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "no graphical session" in result.stderr and "kimi-tray daemon" in result.stderr
    assert "Traceback" not in result.stderr


def test_menu_less_fallback_docks_and_a_click_renews(tray_env, home, oauth_server, desktop,
                                                     tmp_path) -> None:
    """Without PyGObject pystray's xorg backend has no menu: a plain click runs Renew now."""
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 880)
    tray = Tray({**tray_env, "PYSTRAY_BACKEND": "xorg"}, desktop, tmp_path / "xorg.log")
    try:
        # Drawn right from the start (within seconds of docking, not at the first redraw a
        # minute later): a round icon on the panel's own background, not stretched onto black.
        # 5 s, not less: each screenshot takes a moment, and a busy 2-core machine adds more.
        first = tmp_path / "xorg-first.png"

        def drawn() -> bool:
            x, y, w, h = tray.geometry()
            desktop.screenshot(first)
            pixels = Image.open(first).convert("RGB").crop((x, y, x + w, y + h)).tobytes()
            black = sum(1 for i in range(0, len(pixels), 3) if pixels[i:i + 3] == b"\0\0\0")
            return w >= 16 and h >= 16 and black < len(pixels) // 3 // 20

        assert wait_for(drawn, timeout=5, interval=0.1), tray.geometry()
        crop_panel(first, SHOTS / "tray-xorg-start.png", (784, 0, 1024, 48))
        assert tray.wait_state("fresh", tmp_path / "xorg.png", timeout=2) == "fresh"
        before = oauth_server.successful_refreshes
        for _attempt in range(3):  # the panel may still be laying out its icons: click again
            x, y, w, h = tray.geometry()
            desktop.run(["xdotool", "mousemove", str(x + w // 2), str(y + h // 2), "click", "1"])
            if wait_for(lambda: oauth_server.successful_refreshes > before, timeout=5):
                break
        assert oauth_server.successful_refreshes == before + 1, tray.output()
    finally:
        tray.stop()
