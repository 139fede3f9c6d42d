"""Notice within a second when another program changes a file the engine depends on.

Other programs replace these files atomically (write a temp file, rename it over), so a watch on
the file itself dies at the first rename: we watch each file's directory and filter by name. A
directory that does not exist yet (`~/.kimi-code` before the first login) is watched through its
nearest existing ancestor, moving down as directories appear. A slow stat check is the safety net
for what events miss (network filesystems, a watcher that cannot start, an overflowed queue).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # watchdog is imported when the watcher starts, not at import time
    from watchdog.observers.api import BaseObserver

log = logging.getLogger(__name__)

DEBOUNCE = 0.2  # a burst of events (temp file, fsync, rename, chmod) becomes one callback
FALLBACK_INTERVAL = 300.0  # the stat safety net; events do the real work

FileKey = tuple[int, int, int, int] | None
OnChange = Callable[[Path], None]


class PathEvent(Protocol):
    """What an event source reports: a path, and where it moved to (watchdog's event shape)."""

    @property
    def src_path(self) -> str | bytes: ...

    @property
    def dest_path(self) -> str | bytes: ...


class DirectoryEvents(Protocol):
    """Where events come from: watchdog's observer, or GLib's file monitor where GLib runs."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def watch(self, directory: Path, deliver: Callable[[PathEvent], None]) -> object: ...

    def unwatch(self, handle: object) -> None: ...


class WatchdogEvents:
    """watchdog's observer (inotify, FSEvents, ReadDirectoryChangesW), on a thread of its own."""

    def __init__(self) -> None:
        from watchdog.observers import Observer

        logging.getLogger("watchdog").setLevel(logging.INFO)  # no line per inotify event in -v
        # The dispatcher's timeout only bounds how long stop() may wait; a long one keeps the
        # idle process asleep (watchdog's default wakes it every second).
        self._observer: BaseObserver = Observer(timeout=3600)

    def start(self) -> None:
        self._observer.start()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(5)

    def watch(self, directory: Path, deliver: Callable[[PathEvent], None]) -> object:
        from watchdog import events

        # Only what changes a file's content or existence (FSEvents and ReadDirectoryChangesW
        # report in-place writes as modified): on Linux this becomes the inotify mask, so reads
        # of these files, ours included, never wake anyone.
        wanted_events = [events.FileCreatedEvent, events.DirCreatedEvent, events.FileMovedEvent,
                         events.DirMovedEvent, events.FileDeletedEvent, events.DirDeletedEvent,
                         events.FileModifiedEvent, events.FileClosedEvent]

        class Handler(events.FileSystemEventHandler):
            def on_any_event(self, event: events.FileSystemEvent) -> None:
                deliver(event)

        return self._observer.schedule(Handler(), str(directory), recursive=False,
                                       event_filter=wanted_events)

    def unwatch(self, handle: object) -> None:
        self._observer.unschedule(handle)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _Moved:
    src_path: str
    dest_path: str = ""


class GioEvents:
    """GLib's file monitor, delivered by the GLib main loop the tray already runs (the gtk and
    appindicator backends): no watchdog, no ctypes, no thread, about 1 MiB less for good."""

    def __init__(self) -> None:
        from gi.repository import Gio

        self._gio = Gio
        self._monitors: list[Any] = []

    def start(self) -> None:
        pass

    def stop(self) -> None:
        for monitor in self._monitors:
            monitor.cancel()
        self._monitors.clear()

    def watch(self, directory: Path, deliver: Callable[[PathEvent], None]) -> object:
        gio = self._gio
        monitor = gio.File.new_for_path(str(directory)).monitor_directory(
            gio.FileMonitorFlags.WATCH_MOVES, None)

        def changed(_monitor: object, file: Any, other: Any, _kind: object) -> None:
            deliver(_Moved(file.get_path() or "", (other.get_path() or "") if other is not None else ""))

        monitor.connect("changed", changed)
        self._monitors.append(monitor)
        return monitor

    def unwatch(self, handle: object) -> None:
        handle.cancel()  # type: ignore[attr-defined]
        self._monitors.remove(handle)


def file_key(path: Path) -> FileKey:
    """What changes when a file is replaced, rewritten in place or deleted."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def nearest_existing_dir(path: Path) -> Path:
    """The directory to watch for `path`: its parent, or the closest ancestor that exists."""
    directory = path.parent
    while not directory.is_dir() and directory != directory.parent:
        directory = directory.parent
    return directory


class FileWatcher:
    """Calls `on_change(path)` from its own thread, once per burst, for each watched path that
    changed. Never raises into the caller: without a working event source it degrades to the
    stat check alone (and says so once in the log)."""

    def __init__(self, paths: Iterable[Path], on_change: OnChange, *, debounce: float = DEBOUNCE,
                 fallback_interval: float = FALLBACK_INTERVAL, use_events: bool = True,
                 glib: bool = False) -> None:
        """glib: take events from GLib's file monitor (the caller runs a GLib main loop)."""
        self.paths = tuple(dict.fromkeys(Path(os.path.abspath(p)) for p in paths))
        self.on_change = on_change
        self.debounce = debounce
        self.fallback_interval = fallback_interval
        self._use_events = use_events
        self._glib = glib
        self._lock = threading.Lock()
        self._pending: set[Path] = set()
        self._replan = False
        self._keys: dict[Path, FileKey] = {p: file_key(p) for p in self.paths}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._observer: DirectoryEvents | None = None
        self._watches: dict[Path, object] = {}
        self._ancestors = {a for p in self.paths for a in p.parents}

    @property
    def events_active(self) -> bool:
        """True when a directory watcher runs (so callers may poll rarely)."""
        return self._observer is not None

    def start(self) -> FileWatcher:
        if self._use_events:
            self._start_observer()
            # A change between our first look and the watch being in place: check once now.
            self._replan = True
            self._wake.set()
        self._thread = threading.Thread(target=self._run, name="kimi-file-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        source, self._observer = self._observer, None
        if source is not None:
            try:
                source.stop()
            except Exception:  # stopping must never fail the caller's shutdown
                log.debug("Stopping the file watcher failed", exc_info=True)
        if self._thread is not None:
            self._thread.join(5)

    # ----------------------------------------------------------------- event source
    def _start_observer(self) -> None:
        try:
            source: DirectoryEvents = GioEvents() if self._glib else WatchdogEvents()
        except ImportError as exc:
            log.info("No file watcher (%s); checking the files every %.0f s instead.",
                     exc, self.fallback_interval)
            return
        try:
            source.start()
            self._observer = source
            self._plan_watches()
        except Exception as exc:  # inotify limits, a platform without a backend
            self._observer = None
            log.info("The file watcher could not start (%s); checking the files every %.0f s "
                     "instead.", exc, self.fallback_interval)
            with contextlib.suppress(Exception):
                source.stop()

    def _plan_watches(self) -> None:
        """Watch the nearest existing directory of every path; drop watches no longer needed."""
        source = self._observer
        if source is None:
            return
        wanted = {nearest_existing_dir(p) for p in self.paths}
        for directory in set(self._watches) - wanted:
            try:
                source.unwatch(self._watches.pop(directory))
            except Exception:
                log.debug("Unwatching %s failed", directory, exc_info=True)
        for directory in wanted - set(self._watches):
            try:
                self._watches[directory] = source.watch(directory, self._on_event)
            except Exception as exc:  # gone meanwhile, out of inotify watches, observer stopping
                log.info("Cannot watch %s (%s); the periodic check covers it.", directory, exc)

    def _on_event(self, event: PathEvent) -> None:
        """Runs on the event source's thread: note what happened, let our thread act on it."""
        touched = {Path(os.fsdecode(event.src_path))}
        if getattr(event, "dest_path", ""):
            touched.add(Path(os.fsdecode(event.dest_path)))
        hits = {p for p in touched if p in self._keys}
        along_the_way = any(p in self._ancestors for p in touched)
        if not hits and not along_the_way:
            return
        with self._lock:
            self._pending |= hits
            self._replan = self._replan or along_the_way
        self._wake.set()

    # ----------------------------------------------------------------- our thread
    def _run(self) -> None:
        while not self._stop.is_set():
            woken = self._wake.wait(self.fallback_interval)
            if self._stop.is_set():
                return
            if woken:
                # Let the rest of the burst arrive (temp file, rename, chmod), then act once.
                self._stop.wait(self.debounce)
            self._wake.clear()
            self._round(woken)

    def _round(self, woken: bool) -> None:
        """Act on what the events noted (`woken`), or stat every path (the slow check). Its own
        method so that tests can drive it without the thread's waits."""
        with self._lock:
            pending, self._pending = self._pending, set()
            replan, self._replan = self._replan, False
        if replan or not woken:
            self._plan_watches()
        try:
            self._report(pending, check_all=replan or not woken)
        except Exception:  # the watcher must outlive any callback fault
            log.exception("A file-change callback failed")

    def _report(self, named: set[Path], check_all: bool) -> None:
        """Report paths whose key changed, plus those events named (an in-place rewrite within
        one timestamp tick still counts)."""
        changed = set(named)
        for path in self.paths if check_all else named:
            key = file_key(path)
            if key != self._keys[path]:
                changed.add(path)
            self._keys[path] = key
        for path in self.paths:  # keep our order: callers see a stable sequence
            if path in changed:
                self.on_change(path)
