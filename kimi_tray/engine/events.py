"""Connect the file watcher and the resume listener to an engine: what the daemon and tray start.

The engine learns of outside changes and of a resume the moment they happen (as commands on its
queue), so it polls only as a safety net (`SAFETY_POLL`), and the watcher's own stat check covers
missed events.
"""

from __future__ import annotations

import logging
from pathlib import Path

from kimi_tray.engine.commands import FileChanged, Resumed, UseEvents
from kimi_tray.engine.scheduler import Engine
from kimi_tray.platform.resume import ResumeListener, resume_listener
from kimi_tray.platform.watch import FALLBACK_INTERVAL, FileWatcher

log = logging.getLogger(__name__)

SAFETY_POLL = 3600.0  # the engine's own longest sleep once file events wake it


def watched_paths(engine: Engine) -> list[Path]:
    """Both Kimi credential files, OpenClaw's legacy file(s) when that is the target, our state."""
    return engine.watched_paths()


class EventSources:
    def __init__(self, engine: Engine, redraw_step: float | None = None,
                 fallback_interval: float = FALLBACK_INTERVAL, glib: bool = False) -> None:
        """glib: the caller runs a GLib main loop (the tray's gtk and appindicator backends),
        which then brings the file events and the resume signal."""
        self.engine = engine
        self.watcher = FileWatcher(watched_paths(engine), lambda path: engine.send(FileChanged(path)),
                                   fallback_interval=fallback_interval, glib=glib)
        self.listener: ResumeListener = resume_listener(lambda: engine.send(Resumed()), glib=glib)
        self.redraw_step = redraw_step

    def start(self) -> EventSources:
        """Start before the engine: what changes before its first step is queued, not missed."""
        self.watcher.start()
        if self.watcher.events_active:
            self.engine.send(UseEvents(self.redraw_step or SAFETY_POLL))
        self.listener.start()
        return self

    def stop(self) -> None:
        self.listener.stop()
        self.watcher.stop()
