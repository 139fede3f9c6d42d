"""The file watcher's bookkeeping, in-process and deterministic: real files in a temporary home, a
real watchdog observer that is never started (no thread, no inotify), and the watchdog event
objects its emitter would deliver handed over through the observer's own dispatch. Each round is
then run directly (`_round`), as the watcher's thread does after its debounce or its slow-check
timeout. What is checked is what the engine is told: which paths, how often, in which order.
The same paths with real inotify events and real waits are in tests/test_watch_edges.py."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
)
from watchdog.observers.api import BaseObserver

from kimi_tray.platform.watch import FileWatcher, WatchdogEvents


class Told(list[Path]):
    """The engine's side: every path it was told about, in order."""

    def __call__(self, path: Path) -> None:
        self.append(path)


class Rig:
    """A watcher wired to an observer that is never started: events go in by hand."""

    def __init__(self, *paths: Path) -> None:
        self.told = Told()
        self.watcher = FileWatcher(paths, self.told)
        self.source = WatchdogEvents()  # its observer not started: no thread, no inotify
        self.observer: BaseObserver = self.source._observer
        self.watcher._observer = self.source
        self.watcher._plan_watches()

    def watched(self) -> set[Path]:
        """The directories the observer would watch (its emitters), and the watcher's own record."""
        emitted = {Path(emitter.watch.path) for emitter in self.observer.emitters}
        assert emitted == set(self.watcher._watches), "the observer and the watcher disagree"
        return emitted

    def deliver(self, event: FileSystemEvent) -> bool:
        """As the observer's dispatcher: from the watch on the event's directory (or on the path
        itself: a watched directory's own deletion) to the handler. Returns whether the watcher's
        thread would be woken."""
        path = Path(os.fsdecode(event.src_path))
        watch = self.watcher._watches.get(path) or self.watcher._watches.get(path.parent)
        assert watch is not None, f"no watch on {path.parent}: the real observer would not see it"
        self.watcher._wake.clear()
        self.observer.event_queue.put((event, watch))
        self.observer.dispatch_events(self.observer.event_queue)
        return self.watcher._wake.is_set()

    def deliver_to_handler(self, event: FileSystemEvent) -> bool:
        """As `deliver`, for a watch the observer no longer dispatches: straight to the handler."""
        self.watcher._wake.clear()
        self.watcher._on_event(event)
        return self.watcher._wake.is_set()

    def round(self, woken: bool = True) -> list[Path]:
        """One round of the watcher's thread; returns what the engine was told in it."""
        before = len(self.told)
        self.watcher._round(woken)
        return self.told[before:]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture
def creds(home: Path) -> Iterator[Path]:
    path = home / ".kimi-code" / "credentials" / "kimi-code.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"access_token": "a"}')
    yield path


def atomic_replace(path: Path, text: str) -> Path:
    """What the Kimi CLI and we do: a temp file next to the target, renamed over it."""
    tmp = path.with_name(path.name + ".tmp.1")
    tmp.write_text(text)
    os.replace(tmp, path)
    return tmp


def test_the_watch_is_on_the_directory_for_changes_only(home: Path, creds: Path) -> None:
    other = home / ".openclaw" / "openclaw.json"
    rig = Rig(creds, creds.with_name("second.json"), other)
    assert rig.watched() == {creds.parent, home}
    for emitter in rig.observer.emitters:
        assert emitter.watch.is_recursive is False, "a recursive watch wakes us for every subtree"
        assert emitter.watch.event_filter == frozenset({
            FileCreatedEvent, DirCreatedEvent, FileMovedEvent, DirMovedEvent, FileDeletedEvent,
            DirDeletedEvent, FileModifiedEvent, FileClosedEvent}), "reads must wake nobody"
    assert FileOpenedEvent not in emitter.watch.event_filter
    assert FileClosedNoWriteEvent not in emitter.watch.event_filter


def test_an_atomic_replace_is_told_once_and_its_temp_file_never(creds: Path) -> None:
    rig = Rig(creds)
    tmp = atomic_replace(creds, '{"access_token": "b"}')
    assert not rig.deliver(FileCreatedEvent(str(tmp)))
    assert not rig.deliver(FileModifiedEvent(str(tmp)))
    assert not rig.deliver(FileClosedEvent(str(tmp)))
    assert rig.deliver(FileMovedEvent(str(tmp), str(creds)))
    assert rig.round() == [creds]
    assert rig.round() == [], "told once per change"
    assert rig.round(woken=False) == [], "the slow check knows the new file already"


def test_a_rename_away_from_the_watched_name_is_a_change(creds: Path) -> None:
    rig = Rig(creds)
    moved = creds.with_name("kimi-code.json.bak")
    os.replace(creds, moved)
    assert rig.deliver(FileMovedEvent(str(creds), str(moved)))
    assert rig.round() == [creds]


def test_an_in_place_write_is_told_even_when_stat_cannot_tell(creds: Path) -> None:
    rig = Rig(creds)
    assert rig.deliver(FileModifiedEvent(str(creds)))  # nothing on disk changed (one mtime tick)
    assert rig.round() == [creds]
    with creds.open("r+") as handle:
        handle.write('{"access_token": "c"}')
    assert rig.deliver(FileClosedEvent(str(creds)))
    assert rig.round() == [creds]


def test_a_path_given_as_bytes_is_the_same_path(creds: Path) -> None:
    rig = Rig(creds)
    assert rig.deliver(FileModifiedEvent(os.fsencode(creds)))
    assert rig.round() == [creds]


def test_a_delete_is_told_once(creds: Path) -> None:
    rig = Rig(creds)
    creds.unlink()
    assert rig.deliver(FileDeletedEvent(str(creds)))
    assert rig.round() == [creds]
    assert rig.round(woken=False) == [], "the slow check already knows it is gone"
    creds.write_text("{}")
    assert rig.round(woken=False) == [creds], "and notices it coming back without an event"


def test_other_files_in_the_directory_wake_nobody(creds: Path) -> None:
    rig = Rig(creds)
    neighbour = creds.with_name("other.json")
    neighbour.write_text("{}")
    assert not rig.deliver(FileCreatedEvent(str(neighbour)))
    assert not rig.deliver(FileModifiedEvent(str(neighbour)))
    assert not rig.deliver(FileMovedEvent(str(neighbour), str(creds.with_name("third.json"))))
    assert not rig.deliver(DirCreatedEvent(str(creds.with_name("sub"))))
    assert rig.round() == []
    assert rig.watched() == {creds.parent}


def test_a_burst_on_two_files_tells_both_in_the_callers_order(home: Path, creds: Path) -> None:
    usage = creds.with_name("usage.json")
    rig = Rig(creds, usage)
    usage.write_text("{}")
    atomic_replace(creds, "{}")
    assert rig.deliver(FileCreatedEvent(str(usage)))
    assert rig.deliver(FileMovedEvent(str(creds.with_name("x.tmp")), str(creds)))
    assert rig.deliver(FileModifiedEvent(str(usage)))
    assert rig.round() == [creds, usage]


def test_only_the_named_file_is_told_after_an_event(creds: Path) -> None:
    """An event round stats only what the events named: the other file's change waits for its own
    event (or the slow check)."""
    usage = creds.with_name("usage.json")
    rig = Rig(creds, usage)
    usage.write_text("{}")  # its event is still to come
    atomic_replace(creds, "{}")
    assert rig.deliver(FileMovedEvent(str(creds.with_name("x.tmp")), str(creds)))
    assert rig.round() == [creds]
    assert rig.deliver(FileCreatedEvent(str(usage)))
    assert rig.round() == [usage]


def test_the_watch_follows_kimi_code_being_made_and_removed(home: Path) -> None:
    creds = home / ".kimi-code" / "credentials" / "kimi-code.json"
    rig = Rig(creds)
    assert rig.watched() == {home}, "before the first login only the home exists"
    creds.parent.parent.mkdir()
    assert rig.deliver(DirCreatedEvent(str(creds.parent.parent)))
    assert rig.round() == [], "a directory is no change of the file"
    assert rig.watched() == {creds.parent.parent}, "the old watch is dropped"
    creds.parent.mkdir()
    assert rig.deliver(DirCreatedEvent(str(creds.parent)))
    assert rig.round() == []
    assert rig.watched() == {creds.parent}
    creds.write_text("{}")
    assert rig.deliver(FileCreatedEvent(str(creds)))
    assert rig.round() == [creds]
    creds.unlink()
    creds.parent.rmdir()
    assert rig.deliver(FileDeletedEvent(str(creds)))
    assert rig.round() == [creds]
    assert rig.watched() == {creds.parent}, "a file event does not move the watch"
    assert rig.deliver(DirDeletedEvent(str(creds.parent)))
    assert rig.round() == []
    assert rig.watched() == {creds.parent.parent}


def test_a_file_written_before_the_watch_moved_down_is_told(home: Path) -> None:
    """`kimi login` makes the directories and the file in one go: their events came before the
    watch was on them, so the re-plan checks every path."""
    creds = home / ".kimi-code" / "credentials" / "kimi-code.json"
    rig = Rig(creds)
    creds.parent.mkdir(parents=True)
    creds.write_text("{}")
    assert rig.deliver(DirCreatedEvent(str(creds.parent.parent)))
    assert rig.round() == [creds]
    assert rig.watched() == {creds.parent}


def test_a_directory_renamed_into_place_moves_the_watch(home: Path) -> None:
    creds = home / ".kimi-code" / "credentials" / "kimi-code.json"
    rig = Rig(creds)
    staging = home / ".kimi-code.new"
    (staging / "credentials").mkdir(parents=True)
    (staging / "credentials" / "kimi-code.json").write_text("{}")
    os.replace(staging, home / ".kimi-code")
    assert rig.deliver(DirMovedEvent(str(staging), str(home / ".kimi-code")))
    assert rig.round() == [creds]
    assert rig.watched() == {creds.parent}


def test_the_slow_check_tells_only_what_changed_and_re_plans(home: Path, creds: Path) -> None:
    quiet = creds.with_name("quiet.json")
    quiet.write_text("{}")
    later = home / ".openclaw" / "openclaw.json"
    rig = Rig(creds, quiet, later)
    assert rig.round(woken=False) == []
    atomic_replace(creds, '{"access_token": "d"}')
    later.parent.mkdir()
    later.write_text("{}")
    assert rig.round(woken=False) == [creds, later]
    assert rig.watched() == {creds.parent, later.parent}, "events missed, the slow check re-plans"
    assert rig.round(woken=False) == []


def test_a_failing_callback_is_logged_and_the_watcher_goes_on(creds: Path, caplog) -> None:
    caplog.set_level(logging.ERROR, logger="kimi_tray.platform.watch")
    calls: list[Path] = []

    def broken(path: Path) -> None:
        calls.append(path)
        raise RuntimeError("callback broke")

    watcher = FileWatcher([creds], broken)
    atomic_replace(creds, "{}")
    watcher._round(False)
    assert calls == [creds]
    assert [r.getMessage() for r in caplog.records] == ["A file-change callback failed"]
    watcher._round(False)
    assert calls == [creds], "the change counted as told even though the callback failed"


def test_without_an_observer_a_round_only_stats(creds: Path) -> None:
    told = Told()
    watcher = FileWatcher([creds], told, use_events=False)
    watcher._round(True)
    assert watcher._watches == {} and told == []
    creds.unlink()
    watcher._round(False)
    assert told == [creds]


def test_a_watcher_never_started_stops_fine(creds: Path) -> None:
    watcher = FileWatcher([creds], Told())
    watcher.stop()
    assert watcher.events_active is False and watcher._thread is None


def test_stop_stops_the_observer_thread(creds: Path) -> None:
    watcher = FileWatcher([creds], Told()).start()
    assert watcher._thread is not None and watcher._thread.name == "kimi-file-watch"
    source = watcher._observer
    assert isinstance(source, WatchdogEvents)
    observer = source._observer
    assert observer.is_alive()
    watcher.stop()
    assert watcher.events_active is False
    assert not observer.is_alive(), "no watchdog thread left behind"
    assert watcher._thread is not None and not watcher._thread.is_alive()


# ----------------------------------------------------------------------------- starting and stopping

def test_without_watchdog_the_stat_check_is_all_and_says_so(creds: Path, monkeypatch, caplog) -> None:
    """A build without watchdog's observers (a frozen app missing a module) still runs."""
    import sys

    monkeypatch.setitem(sys.modules, "watchdog.observers", None)
    caplog.set_level(logging.INFO, logger="kimi_tray.platform.watch")
    watcher = FileWatcher([creds], Told(), fallback_interval=120)
    watcher._start_observer()
    assert watcher.events_active is False and watcher._watches == {}
    assert [r.getMessage() for r in caplog.records] == [
        "No file watcher (import of watchdog.observers halted; None in sys.modules); checking the "
        "files every 120 s instead."]


def test_watchdogs_own_lines_stay_out_of_verbose_logs(creds: Path) -> None:
    logger = logging.getLogger("watchdog")
    before = logger.level
    logger.setLevel(logging.DEBUG)
    watcher = FileWatcher([creds], Told()).start()
    try:
        assert logger.level == logging.INFO, "no line per inotify event with -v"
    finally:
        watcher.stop()
        logger.setLevel(before)


class BrokenObserver:
    """An observer whose start fails (inotify limits) and whose clean-up fails as well."""

    made: list[BrokenObserver] = []

    def __init__(self, timeout: float) -> None:
        self.stop_calls = 0
        BrokenObserver.made.append(self)

    def start(self) -> None:
        raise OSError(24, "Too many open files")

    def stop(self) -> None:
        self.stop_calls += 1
        raise RuntimeError("not started")


def test_an_observer_that_fails_to_start_is_cleaned_up_quietly(creds: Path, monkeypatch) -> None:
    import watchdog.observers

    BrokenObserver.made.clear()
    monkeypatch.setattr(watchdog.observers, "Observer", BrokenObserver)
    watcher = FileWatcher([creds], Told())
    watcher._start_observer()  # must not raise, although the clean-up raised too
    assert watcher.events_active is False
    (observer,) = BrokenObserver.made
    assert observer.stop_calls == 1, "the half-started observer is stopped"


def test_a_failing_observer_stop_does_not_fail_the_shutdown(creds: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="kimi_tray.platform.watch")
    watcher = FileWatcher([creds], Told()).start()
    source = watcher._observer
    assert isinstance(source, WatchdogEvents)
    observer = source._observer

    def refuse() -> None:
        raise RuntimeError("emitter gone")

    observer.stop = refuse  # type: ignore[method-assign]
    try:
        watcher.stop()
        assert watcher.events_active is False
        (note,) = [r for r in caplog.records if r.name == "kimi_tray.platform.watch"]
        assert note.getMessage() == "Stopping the file watcher failed"
        assert note.levelno == logging.DEBUG
        assert note.exc_info and note.exc_info[0] is RuntimeError, "with its traceback"
    finally:
        del observer.stop
        observer.stop()
        observer.join(5)


def test_out_of_inotify_watches_the_slow_check_retries(home: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="kimi_tray.platform.watch")
    creds = home / ".kimi-code" / "credentials" / "kimi-code.json"
    rig = Rig(creds)
    real_schedule = rig.observer.schedule

    def refuse(*args: object, **kwargs: object) -> object:
        raise OSError(28, "inotify watch limit reached")

    rig.observer.schedule = refuse  # type: ignore[method-assign]
    creds.parent.mkdir(parents=True)
    assert rig.deliver(DirCreatedEvent(str(creds.parent.parent)))
    assert rig.round() == []
    assert rig.watched() == set(), "the old watch is given up, the new one could not be made"
    assert [r.getMessage() for r in caplog.records] == [
        f"Cannot watch {creds.parent} ([Errno 28] inotify watch limit reached); the periodic check "
        "covers it."]
    assert caplog.records[0].levelno == logging.INFO
    rig.observer.schedule = real_schedule  # type: ignore[method-assign]
    creds.write_text("{}")
    assert rig.round(woken=False) == [creds]
    assert rig.watched() == {creds.parent}, "the slow check tried again"


def test_a_watch_the_observer_already_dropped_is_forgotten(home: Path, caplog) -> None:
    """A stopping observer may have dropped a watch before we move it: said at debug level only."""
    caplog.set_level(logging.DEBUG, logger="kimi_tray.platform.watch")
    creds = home / ".kimi-code" / "credentials" / "kimi-code.json"
    rig = Rig(creds)
    rig.observer.unschedule_all()
    creds.parent.mkdir(parents=True)
    assert rig.deliver_to_handler(DirCreatedEvent(str(creds.parent.parent)))
    assert rig.round() == []
    assert set(rig.watcher._watches) == {creds.parent}
    (note,) = caplog.records
    assert note.getMessage() == f"Unwatching {home} failed"
    assert note.levelno == logging.DEBUG
    assert note.exc_info and note.exc_info[0] is KeyError, "with its traceback"
