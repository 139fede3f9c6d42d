"""A private D-Bus "system" bus where a test may play logind and announce sleep and wake."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

from jeepney import DBusAddress, new_signal
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import DBusConnection, open_dbus_connection

CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
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
LOGIN1 = DBusAddress("/org/freedesktop/login1", bus_name="org.freedesktop.login1",
                     interface="org.freedesktop.login1.Manager")


class SystemBus:
    """dbus-daemon with a config that lets anyone own org.freedesktop.login1 (a test's logind)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.config = directory / "system-bus.conf"
        self.config.write_text(CONFIG.format(socket=directory / "system_bus_socket"))
        self.proc = subprocess.Popen(["dbus-daemon", "--config-file", str(self.config), "--nofork",
                                      "--print-address"], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        self.address = self.proc.stdout.readline().strip()
        if not self.address:
            raise RuntimeError("dbus-daemon did not start")
        self._logind: DBusConnection | None = None

    def logind(self) -> DBusConnection:
        """A connection owning org.freedesktop.login1, as systemd-logind's would."""
        if self._logind is None:
            connection = open_dbus_connection(bus=self.address)
            reply = connection.send_and_get_reply(
                message_bus.RequestName("org.freedesktop.login1"), timeout=5)
            assert reply.body == (1,), reply.body  # DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER
            self._logind = connection
        return self._logind

    def prepare_for_sleep(self, going_to_sleep: bool) -> float:
        """Emit logind's signal; returns when (time.monotonic()) it was sent."""
        self.logind().send(new_signal(LOGIN1, "PrepareForSleep", "b", (going_to_sleep,)))
        return time.monotonic()

    def stop(self) -> None:
        if self._logind is not None:
            self._logind.close()
        self.proc.terminate()
        self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class Counter:
    """A resume callback that counts its calls and can be waited for."""

    def __init__(self) -> None:
        self.count = 0
        self.event = threading.Event()

    def __call__(self) -> None:
        self.count += 1
        self.event.set()
