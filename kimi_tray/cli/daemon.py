"""The headless listener: logs what changes, and notifies where a notification service exists."""

from __future__ import annotations

import logging

from kimi_tray.core.health import Health, Status
from kimi_tray.engine.commands import RememberForcedLoginWarning
from kimi_tray.engine.scheduler import EngineHandle
from kimi_tray.ui.notify import NotificationPolicy, choose_notifier

log = logging.getLogger("kimi_tray.cli.daemon")


class DaemonReporter:
    def __init__(self, engine: EngineHandle) -> None:
        self.policy = NotificationPolicy(
            choose_notifier(), login_hint="Run `kimi-tray login` in a terminal.",
            last_forced_warning=engine.status.last_forced_login_warning,
            on_forced_warning=lambda when: engine.send(RememberForcedLoginWarning(when)),
        )
        self._last: tuple[str, str, str] | None = None

    def on_status(self, status: Status) -> None:
        key = (status.health.value, status.message, status.openclaw)
        if key != self._last:
            self._last = key
            if status.health is Health.NEEDS_LOGIN:
                log.warning("Login needed: %s Run: kimi-tray login", status.message)
            else:
                log.info("%s", status.summary())
        self.policy.on_status(status)
