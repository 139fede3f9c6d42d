"""What every notifier promises, run against each of them: the log for real, desktop-notifier and
plyer through the real notification daemon on a private D-Bus session bus (dunst, recorded by
dbus-monitor), and the macOS one with `osascript` replaced at the edge by a recording stand-in."""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from kimi_tray.core.logs import register_secret
from kimi_tray.ui.notify import (
    LOGIN,
    OPEN_LOG,
    ActionNotifier,
    LogNotifier,
    MacNotifier,
    Notifier,
    PlyerNotifier,
)
from tests.conftest import wait_for
from tests.support.desktop import Desktop

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjb250cmFjdCJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


class NotifierContract:
    """Subclasses build the notifier (`make`), say what reached the user (`shown`: the text of
    each notification holding `marker`, and the button keys it had) and how to break its
    service (`break_service`)."""

    @pytest.fixture
    def notifier(self, request: pytest.FixtureRequest) -> Notifier:
        return self.make(request)

    def make(self, request: pytest.FixtureRequest) -> Notifier:
        raise NotImplementedError

    def shown(self, marker: str) -> list[tuple[str, set[str]]]:
        raise NotImplementedError

    def break_service(self, request: pytest.FixtureRequest) -> None:
        raise NotImplementedError

    def wait_shown(self, marker: str) -> list[tuple[str, set[str]]]:
        wait_for(lambda: self.shown(marker), timeout=10)
        return self.shown(marker)

    # -- the contract
    def test_a_notification_reaches_the_user(self, notifier: Notifier) -> None:
        marker = f"m{secrets.token_hex(4)}"
        notifier.send("kimi-tray contract", f"Everything is fine {marker}.")
        shown = self.wait_shown(marker)
        assert len(shown) == 1, shown
        assert "kimi-tray contract" in shown[0][0] and f"Everything is fine {marker}." in shown[0][0]

    def test_it_never_shows_a_token(self, notifier: Notifier) -> None:
        marker = f"m{secrets.token_hex(4)}"
        secret = f"refresh-{secrets.token_hex(16)}"
        register_secret(secret)
        notifier.send(f"Token {secret}", f"{marker} access {JWT} refresh {secret}", [LOGIN])
        shown = self.wait_shown(marker)
        assert shown, "the notification itself is shown"
        for text, _ in shown:
            assert secret not in text and JWT not in text and "eyJ" not in text
        assert "[redacted" in shown[0][0], "the rest of the notification is kept"

    def test_buttons_only_where_the_backend_shows_them(self, notifier: Notifier) -> None:
        asked = (LOGIN, OPEN_LOG)
        offered = notifier.offered(asked)
        assert set(offered) <= set(asked)
        assert offered == (asked if notifier.shows_actions else ())
        marker = f"m{secrets.token_hex(4)}"
        notifier.send("kimi-tray buttons", f"Pick one {marker}", asked)
        shown = self.wait_shown(marker)
        assert [keys for _, keys in shown] == [{a.key for a in offered}]

    def test_a_broken_service_never_raises(self, notifier: Notifier,
                                           request: pytest.FixtureRequest) -> None:
        self.break_service(request)
        notifier.send("kimi-tray broken", "Nobody shows this.", [LOGIN])  # must not raise


class TestLogNotifier(NotifierContract):
    @pytest.fixture(autouse=True)
    def records(self, caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
        caplog.set_level(logging.INFO, logger="kimi_tray")
        self.caplog = caplog
        return caplog

    def make(self, request: pytest.FixtureRequest) -> Notifier:
        return LogNotifier()

    def shown(self, marker: str) -> list[tuple[str, set[str]]]:
        return [(r.getMessage(), set()) for r in self.caplog.records
                if r.name == "kimi_tray.ui.notify" and marker in r.getMessage()]

    def break_service(self, request: pytest.FixtureRequest) -> None:
        class Refusing(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                raise RuntimeError("the log cannot be written")

        handler = Refusing()
        logging.getLogger("kimi_tray.ui.notify").addHandler(handler)
        request.addfinalizer(lambda: logging.getLogger("kimi_tray.ui.notify").removeHandler(handler))


class TestMacNotifier(NotifierContract):
    """osascript at the edge: a stand-in that records the argv it was given."""

    @pytest.fixture(autouse=True)
    def osascript(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        self.calls = tmp_path / "osascript-calls"
        self.calls.mkdir()
        script = bin_dir / "osascript"
        script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "$(mktemp -p {self.calls})"\n')
        script.chmod(0o755)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        self.bin_dir = bin_dir
        return script

    def make(self, request: pytest.FixtureRequest) -> Notifier:
        return MacNotifier()

    def shown(self, marker: str) -> list[tuple[str, set[str]]]:
        texts = [path.read_text() for path in sorted(self.calls.iterdir())]
        # argv: -e <script> <title> <message>; AppleScript's `display notification` has no buttons
        return [(text, set()) for text in texts if marker in text]

    def break_service(self, request: pytest.FixtureRequest) -> None:
        (self.bin_dir / "osascript").write_text("#!/bin/sh\necho 'execution error: -1743' >&2\nexit 1\n")


def dbus_actions(call: str) -> set[str]:
    """The button keys of one recorded Notify call: its first array holds key, label pairs;
    `default` is the click on the notification itself, not a button."""
    match = re.search(r"array \[(.*?)\]", call, re.S)
    strings = re.findall(r'string "((?:[^"\\]|\\.)*)"', match.group(1)) if match else []
    return set(strings[0::2]) - {"default"}


class DesktopNotifierContract(NotifierContract):
    pytestmark = pytest.mark.desktop

    @pytest.fixture(autouse=True)
    def session(self, desktop: Desktop, monkeypatch: pytest.MonkeyPatch) -> Iterator[Desktop]:
        for key, value in desktop.env.items():
            monkeypatch.setenv(key, value)
        self.desktop = desktop
        yield desktop

    def shown(self, marker: str) -> list[tuple[str, set[str]]]:
        calls = self.desktop.notifications().split("method call")
        return [(call, dbus_actions(call)) for call in calls if "member=Notify" in call and marker in call]

    def break_service(self, request: pytest.FixtureRequest) -> None:
        monkeypatch = request.getfixturevalue("monkeypatch")
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={self.desktop.directory}/no-bus")
        monkeypatch.setenv("PATH", str(self.desktop.directory / "no-tools"))


class TestActionNotifier(DesktopNotifierContract):
    def make(self, request: pytest.FixtureRequest) -> Notifier:
        return ActionNotifier(on_action=lambda key: None)


class TestPlyerNotifier(DesktopNotifierContract):
    def make(self, request: pytest.FixtureRequest) -> Notifier:
        return PlyerNotifier()
