"""A throwaway Linux desktop for end-to-end tests: Xvfb, a D-Bus session bus, an X system tray
(trayer), a notification daemon (dunst) and a recorder of every notification (dbus-monitor)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

TOOLS = ("Xvfb", "trayer", "dunst", "dunstctl", "dbus-daemon", "dbus-monitor", "dbus-send", "xdotool",
         "import", "xwininfo")


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


@dataclass
class Desktop:
    directory: Path
    env: dict[str, str] = field(default_factory=dict)
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def notifications_log(self) -> Path:
        return self.directory / "notifications.log"

    def start(self, width: int = 1024, height: int = 300, tray_host: bool = True) -> Desktop:
        """Start everything, or nothing: a part that fails to start stops the ones before it."""
        try:
            return self._start(width, height, tray_host)
        except BaseException:
            self.stop()
            raise

    def _start(self, width: int, height: int, tray_host: bool) -> Desktop:
        # Xvfb picks a free display itself and writes its number to a pipe once it accepts
        # connections: no race with another test picking the same number, no polling.
        # A client must then connect through the socket path: a stale socket file left by a
        # killed server can make a new one answer only on its abstract socket; then try again.
        for _attempt in range(3):
            read_end, write_end = os.pipe()
            self._spawn(["Xvfb", "-displayfd", str(write_end), "-screen", "0", f"{width}x{height}x24",
                         "-nolisten", "tcp", "-noreset"], "xvfb.log", {}, pass_fds=(write_end,))
            os.close(write_end)
            display = _read_display(read_end)
            self.env = {"DISPLAY": f":{display}"}
            if self.run(["xwininfo", "-root"]).returncode == 0:
                break
            server = self.processes.pop()
            server.kill()
            server.wait()
        else:
            raise RuntimeError("Xvfb did not accept connections")
        bus = self.directory / "bus"
        self._spawn(["dbus-daemon", "--session", "--nofork", f"--address=unix:path={bus}"], "dbus.log", {})
        self.env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={bus}"
        _wait(bus.exists, "dbus-daemon")
        if tray_host:
            self._spawn_tray_host()
        # dunst's context menu (`dunstctl context`) asks "dmenu" which action to run: this one
        # picks the button whose label is in $DESKTOP_DIR/pick, as a user clicking it would.
        picker = self.directory / "pick-action"
        picker.write_text(f'#!/bin/sh\ngrep -m1 -F -- "$(cat {self.directory / "pick"})"\n')
        picker.chmod(0o755)
        config = self.directory / "dunstrc"
        config.write_text(f"[global]\n    dmenu = {picker}\n")
        self._spawn(["dunst", "-config", str(config)], "dunst.log", self.env)
        self._spawn(["dbus-monitor", "--session", "interface='org.freedesktop.Notifications'"],
                    "notifications.log", self.env)
        if tray_host:
            self._wait_for_tray_host()
        _wait(lambda: "org.freedesktop.Notifications" in self.bus_names(), "dunst")
        time.sleep(0.5)
        return self

    def start_tray_host(self) -> None:
        """A panel that starts after the apps, as one can at login."""
        self._spawn_tray_host()
        self._wait_for_tray_host()

    def _spawn_tray_host(self) -> None:
        self._spawn(["trayer", "--edge", "top", "--align", "right", "--widthtype", "pixel", "--width",
                     "240", "--heighttype", "pixel", "--height", "48", "--transparent", "false",
                     "--tint", "0x333333", "--SetDockType", "true"], "trayer.log", self.env)

    def _wait_for_tray_host(self) -> None:
        _wait(lambda: "panel" in self.windows(), "trayer")

    def _spawn(self, args: list[str], log_name: str, extra_env: dict[str, str],
               pass_fds: tuple[int, ...] = ()) -> None:
        log = open(self.directory / log_name, "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **extra_env},
                                pass_fds=pass_fds)
        self.processes.append(proc)

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()

    def run(self, args: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, env={**os.environ, **self.env}, capture_output=True, text=True,
                              timeout=30, **kwargs)

    def windows(self) -> str:
        return self.run(["xwininfo", "-root", "-tree"]).stdout

    def icon_geometry(self, title_prefix: str = "Kimi") -> tuple[int, int, int, int] | None:
        """(x, y, width, height) on screen of the docked icon window whose title starts so."""
        pattern = re.compile(
            '"' + re.escape(title_prefix) + r'[^"]*":.*?(\d+)x(\d+)[+-]-?\d+[+-]-?\d+\s+\+(-?\d+)\+(-?\d+)'
        )
        for line in self.windows().splitlines():
            match = pattern.search(line)
            if match:
                w, h, x, y = map(int, match.groups())
                return x, y, w, h
        return None

    def screenshot(self, path: Path) -> Path:
        self.run(["import", "-window", "root", str(path)], check=True)
        return path

    def notifications(self) -> str:
        return self.notifications_log.read_text(errors="replace")

    def bus_names(self) -> str:
        return self.run(["dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus",
                         "/org/freedesktop/DBus", "org.freedesktop.DBus.ListNames"]).stdout

    def notify_calls(self, title: str) -> list[str]:
        """The recorded Notify calls whose summary is `title` (each as the monitor printed it)."""
        calls = self.notifications().split("method call")
        return [call for call in calls if "member=Notify" in call and f'string "{title}"' in call]

    def click_notification(self) -> None:
        """What a click on the newest notification does: dunst invokes its default action and
        emits ActionInvoked on the bus."""
        self.run(["dunstctl", "action", "0"], check=True)

    def press_button(self, label: str) -> None:
        """Press the newest notification's button with this label (dunst's context menu):
        dunst emits ActionInvoked with that button's key."""
        (self.directory / "pick").write_text(label)
        self.run(["dunstctl", "context"], check=True)


def _read_display(fd: int, timeout: float = 10.0) -> int:
    import select

    with os.fdopen(fd, "rb") as pipe:
        ready, _, _ = select.select([pipe], [], [], timeout)
        if not ready:
            raise RuntimeError("Xvfb did not start")
        line = pipe.readline().strip()
    if not line.isdigit():
        raise RuntimeError("Xvfb did not start")
    return int(line)


def _wait(predicate, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start")
