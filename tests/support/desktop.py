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

TOOLS = ("Xvfb", "trayer", "dunst", "dbus-daemon", "dbus-monitor", "xdotool", "import", "xwininfo")


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

    def start(self, width: int = 1024, height: int = 300) -> Desktop:
        display = 90
        while Path(f"/tmp/.X11-unix/X{display}").exists() or Path(f"/tmp/.X{display}-lock").exists():
            display += 1
        self._spawn(["Xvfb", f":{display}", "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
                    "xvfb.log", {})
        self.env = {"DISPLAY": f":{display}"}
        _wait(lambda: Path(f"/tmp/.X11-unix/X{display}").exists(), "Xvfb")
        bus = self.directory / "bus"
        self._spawn(["dbus-daemon", "--session", "--nofork", f"--address=unix:path={bus}"], "dbus.log", {})
        self.env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={bus}"
        _wait(bus.exists, "dbus-daemon")
        self._spawn(["trayer", "--edge", "top", "--align", "right", "--widthtype", "pixel", "--width",
                     "240", "--heighttype", "pixel", "--height", "48", "--transparent", "false",
                     "--tint", "0x333333", "--SetDockType", "true"], "trayer.log", self.env)
        self._spawn(["dunst"], "dunst.log", self.env)
        self._spawn(["dbus-monitor", "--session", "interface='org.freedesktop.Notifications'"],
                    "notifications.log", self.env)
        _wait(lambda: "panel" in self.windows(), "trayer")
        time.sleep(0.5)
        return self

    def _spawn(self, args: list[str], log_name: str, extra_env: dict[str, str]) -> None:
        log = open(self.directory / log_name, "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **extra_env})
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
            '"' + re.escape(title_prefix) + r'[^"]*":.*?(\d+)x(\d+)[+-]\d+[+-]\d+\s+\+(-?\d+)\+(-?\d+)'
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


def _wait(predicate, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start")
