"""Connect the file watcher and the resume listener to an engine: what the daemon and tray start.

The engine learns of outside changes and of a resume the moment they happen, so it polls only
as a safety net (`SAFETY_POLL`), and the watcher's own stat check covers missed events.
"""

from __future__ import annotations

import logging
from pathlib import Path

from kimi_tray.engine.renewer import Renewer
from kimi_tray.platform.resume import ResumeListener, resume_listener
from kimi_tray.platform.watch import FALLBACK_INTERVAL, FileWatcher

log = logging.getLogger(__name__)

SAFETY_POLL = 3600.0  # the engine's own longest sleep once file events wake it


def watched_paths(renewer: Renewer) -> list[Path]:
    """Both Kimi credential files, OpenClaw's legacy file(s) when that is the target, our state.

    OpenClaw's SQLite store is not watched: checking it means running its CLI for seconds, and
    every sync of ours would trigger that check again."""
    paths = [*renewer.credential_paths(), renewer.store.path]
    files = getattr(renewer.target, "files", None)
    if callable(files):
        paths += files()
    return paths


class EventSources:
    def __init__(self, renewer: Renewer, redraw_step: float | None = None,
                 fallback_interval: float = FALLBACK_INTERVAL) -> None:
        self.renewer = renewer
        self.watcher = FileWatcher(watched_paths(renewer), renewer.file_changed,
                                   fallback_interval=fallback_interval)
        self.listener: ResumeListener = resume_listener(renewer.resumed)
        self.redraw_step = redraw_step

    def start(self) -> EventSources:
        """Start before the engine: what changes before its first step is queued, not missed."""
        self.watcher.start()
        if self.watcher.events_active:
            self.renewer.use_events(self.redraw_step or SAFETY_POLL)
        self.listener.start()
        return self

    def stop(self) -> None:
        self.listener.stop()
        self.watcher.stop()
