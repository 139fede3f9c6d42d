"""The stand-ins the benchmarks run against, kept here so benchmarks/ needs nothing from tests/.

A loopback OAuth server with rotating refresh tokens, a clock that jumps instead of sleeping, a
credential file writer, a shell `openclaw` that records gateway restarts, and a throwaway X
desktop (Xvfb, a session bus, a tray host) for the tray's figures.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs


class SimClock:
    """Wall and monotonic time that advance only when told (the engine's Clock protocol)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now, self._mono = start, 1000.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._mono += seconds

    def wait(self, event: threading.Event, seconds: float) -> bool:
        if event.is_set():
            return True
        self.advance(max(0.0, seconds))
        return event.is_set()


class LoopbackOAuth:
    """Kimi's token endpoint on 127.0.0.1: each refresh token works once, then it is dead."""

    def __init__(self, lifetime: int = 900) -> None:
        self.lifetime = lifetime
        self.valid_refresh: set[str] = set()
        self.successful_refreshes = 0
        self.drops = 0  # the next n requests find "no network" (connection closed)
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True

    def start(self) -> LoopbackOAuth:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def issue(self) -> dict:
        refresh = f"rt-{secrets.token_urlsafe(24)}"
        with self._lock:
            self.valid_refresh.add(refresh)
        return {"access_token": f"at-{secrets.token_urlsafe(32)}", "refresh_token": refresh,
                "expires_in": self.lifetime, "scope": "kimi-code", "token_type": "Bearer"}

    def _handler(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else delayed ACKs add 40 ms to every refresh

            def log_message(self, *args: object) -> None:
                return

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                with owner._lock:
                    drop = owner.drops > 0
                    owner.drops -= drop
                    alive = not drop and form.get("refresh_token") in owner.valid_refresh
                    if alive:
                        owner.valid_refresh.discard(form.get("refresh_token", ""))
                        owner.successful_refreshes += 1
                if drop:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                body = owner.issue() if alive else {"error": "invalid_grant"}
                data = json.dumps(body).encode()
                self.send_response(200 if alive else 400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def write_credentials(path: Path, tokens: dict, expires_at: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = {"access_token": tokens["access_token"], "refresh_token": tokens["refresh_token"],
            "expires_at": expires_at, "scope": "kimi-code", "token_type": "Bearer",
            "expires_in": tokens.get("expires_in", 900)}
    path.write_text(json.dumps(data, indent=2) + "\n")
    path.chmod(0o600)
    return path


def write_fake_openclaw(bin_dir: Path) -> Path:
    """An `openclaw` that records each call as a JSON line in $FAKE_OPENCLAW_LOG and succeeds."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "openclaw"
    script.write_text('#!/bin/sh\n[ -n "$FAKE_OPENCLAW_LOG" ] && '
                      'printf \'{"argv": ["%s", "%s"]}\\n\' "$1" "$2" >> "$FAKE_OPENCLAW_LOG"\n'
                      "exit 0\n")
    script.chmod(0o755)
    return script


DESKTOP_TOOLS = ("Xvfb", "trayer", "dunst", "dbus-daemon", "xwininfo", "import")


class Desktop:
    """Xvfb, a session bus, an X system tray (trayer) and a notification daemon (pystray's GTK
    backend needs one at start), for as long as a measurement lasts."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.env: dict[str, str] = {}
        self.processes: list[subprocess.Popen] = []

    @staticmethod
    def missing_tools() -> list[str]:
        return [tool for tool in DESKTOP_TOOLS if shutil.which(tool) is None]

    def start(self) -> Desktop:
        try:
            return self._start()
        except Exception:
            self.stop()  # leave no Xvfb or bus behind when one part does not come up
            raise

    def _start(self) -> Desktop:
        display = 90
        while Path(f"/tmp/.X11-unix/X{display}").exists() or Path(f"/tmp/.X{display}-lock").exists():
            display += 1
        self._spawn(["Xvfb", f":{display}", "-screen", "0", "1024x300x24", "-nolisten", "tcp"], {})
        self.env = {"DISPLAY": f":{display}"}
        _wait(lambda: Path(f"/tmp/.X11-unix/X{display}").exists(), "Xvfb")
        bus = self.directory / "bus"
        self._spawn(["dbus-daemon", "--session", "--nofork", f"--address=unix:path={bus}"], {})
        self.env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={bus}"
        _wait(bus.exists, "dbus-daemon")
        self._spawn(["trayer", "--edge", "top", "--align", "right", "--widthtype", "pixel", "--width",
                     "240", "--heighttype", "pixel", "--height", "48", "--transparent", "false",
                     "--tint", "0x333333", "--SetDockType", "true"], self.env)
        self._spawn(["dunst"], self.env)
        _wait(lambda: "panel" in self.windows(), "trayer", timeout=30)  # slow on a busy machine
        time.sleep(0.5)
        return self

    def _spawn(self, args: list[str], extra_env: dict[str, str]) -> None:
        self.processes.append(subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL,
                                               env={**os.environ, **extra_env}))

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()

    def run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, env={**os.environ, **self.env}, capture_output=True, text=True,
                              timeout=30)

    def windows(self) -> str:
        return self.run(["xwininfo", "-root", "-tree"]).stdout

    def icon_geometry(self, title_prefix: str = "Kimi") -> tuple[int, int, int, int] | None:
        pattern = re.compile(
            '"' + re.escape(title_prefix) + r'[^"]*":.*?(\d+)x(\d+)[+-]\d+[+-]\d+\s+\+(-?\d+)\+(-?\d+)')
        for line in self.windows().splitlines():
            match = pattern.search(line)
            if match:
                w, h, x, y = map(int, match.groups())
                return x, y, w, h
        return None

    def screenshot(self, path: Path) -> Path:
        self.run(["import", "-window", "root", str(path)])
        return path


SYSTEM_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="org.freedesktop.login1"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
    <allow send_type="signal"/>
  </policy>
</busconfig>
"""


class PrivateSystemBus:
    """A dbus-daemon where the benchmark plays logind and announces sleep and wake."""

    def __init__(self, directory: Path) -> None:
        from jeepney.bus_messages import message_bus
        from jeepney.io.blocking import open_dbus_connection

        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "system-bus.conf"
        config.write_text(SYSTEM_BUS_CONFIG.format(socket=directory / "system_bus_socket"))
        self.proc = subprocess.Popen(["dbus-daemon", "--config-file", str(config), "--nofork",
                                      "--print-address"], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        self.address = self.proc.stdout.readline().strip()
        self.logind = open_dbus_connection(bus=self.address)
        self.logind.send_and_get_reply(message_bus.RequestName("org.freedesktop.login1"), timeout=5)

    def prepare_for_sleep(self, going_to_sleep: bool) -> float:
        from jeepney import DBusAddress, new_signal

        login1 = DBusAddress("/org/freedesktop/login1", bus_name="org.freedesktop.login1",
                             interface="org.freedesktop.login1.Manager")
        self.logind.send(new_signal(login1, "PrepareForSleep", "b", (going_to_sleep,)))
        return time.monotonic()

    def stop(self) -> None:
        self.logind.close()
        self.proc.terminate()
        self.proc.wait(5)


def _wait(predicate, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start")


def usage_reply(now: float, window_reset_in: float = 3 * 3600) -> dict:
    """A usage reply shaped like Kimi's (numbers as strings, the 5-hour window without `used`)."""

    def iso(epoch: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))

    return {"user": {"membershipLevel": "LEVEL_INTERMEDIATE"},
            "usage": {"limit": "2048", "used": "512", "remaining": "1536",
                      "resetTime": iso(now + 5 * 86400)},
            "limits": [{"window": {"duration": 300, "timeUnit": "TIME_UNIT_MINUTE"},
                        "detail": {"limit": "200", "remaining": "150",
                                   "resetTime": iso(now + window_reset_in)}}]}


class LoopbackUsage:
    """Kimi's usage endpoint (`GET {base}/usages`) on 127.0.0.1; counts the requests."""

    def __init__(self) -> None:
        self.reply: dict = usage_reply(time.time())
        self.count = 0
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True

    @property
    def url(self) -> str:
        """The base URL (what KIMI_CODE_BASE_URL holds)."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/coding/v1"

    def start(self) -> LoopbackUsage:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: object) -> None:
                return

            def do_GET(self) -> None:  # noqa: N802
                with owner._lock:
                    owner.count += 1
                body = json.dumps(owner.reply).encode()
                self.send_response(200 if self.path.endswith("/usages") else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
