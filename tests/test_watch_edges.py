"""The file watcher at its edges, with real watchdog on temporary directories and short debounce
and stat intervals: what counts as a change, what is ignored, the order of reports, directories
that appear later, and a watcher without its event source."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kimi_tray.platform.watch import FileWatcher, file_key, nearest_existing_dir

SETTLE = 0.25  # long enough for an event the watcher should ignore to have been reported


class Seen:
    def __init__(self, fail_first: bool = False) -> None:
        self.paths: list[Path] = []
        self.lock = threading.Lock()
        self.fail_first = fail_first

    def __call__(self, path: Path) -> None:
        with self.lock:
            self.paths.append(path)
            if self.fail_first and len(self.paths) == 1:
                raise RuntimeError("callback broke")

    def wait(self, count: int, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.paths) >= count:
                    return True
            time.sleep(0.01)
        return False


@pytest.fixture
def watch() -> Iterator:
    watchers: list[FileWatcher] = []

    def start(*paths: Path, seen: Seen | None = None, **kwargs) -> tuple[FileWatcher, Seen]:
        seen = seen or Seen()
        kwargs.setdefault("debounce", 0.02)
        watcher = FileWatcher(paths, seen, **kwargs).start()
        watchers.append(watcher)
        return watcher, seen

    yield start
    for watcher in watchers:
        watcher.stop()


def replace(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_file_key_changes_with_every_kind_of_change(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    assert file_key(path) is None
    path.write_text("one")
    first = file_key(path)
    assert first is not None and first[1] == 3
    replace(path, "two")
    second = file_key(path)
    assert second != first
    os.utime(path, ns=(1, 1))
    assert file_key(path) != second
    path.unlink()
    assert file_key(path) is None


def test_the_watched_directory_is_the_nearest_that_exists(tmp_path: Path) -> None:
    assert nearest_existing_dir(tmp_path / "f") == tmp_path
    assert nearest_existing_dir(tmp_path / "a" / "b" / "f") == tmp_path
    (tmp_path / "a").mkdir()
    assert nearest_existing_dir(tmp_path / "a" / "b" / "f") == tmp_path / "a"
    assert nearest_existing_dir(Path("/nonexistent-kimi-tray/a/f")) == Path("/")


def test_paths_are_made_absolute_and_counted_once(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    watcher = FileWatcher([Path("f"), tmp_path / "f", Path("g")], Seen())
    assert watcher.paths == (tmp_path / "f", tmp_path / "g")
    assert watcher.events_active is False


def test_each_change_is_reported_once_and_others_files_not(tmp_path: Path, watch) -> None:
    path = tmp_path / "creds.json"
    path.write_text("{}")
    watcher, seen = watch(path)
    assert watcher.events_active is True
    time.sleep(SETTLE)
    assert seen.paths == [], "nothing changed since the start"
    (tmp_path / "other.json").write_text("x")
    replace(tmp_path / "other.json", "y")
    path.read_text()
    time.sleep(SETTLE)
    assert seen.paths == [], "other files and reads wake nobody"
    replace(path, json.dumps({"a": 1}))
    assert seen.wait(1)
    with path.open("a") as handle:
        handle.write(" ")
    assert seen.wait(2)
    path.unlink()
    assert seen.wait(3)
    time.sleep(SETTLE)
    assert seen.paths == [path, path, path]
    watcher.stop()
    assert watcher.events_active is False


def test_a_burst_is_one_report_in_the_order_of_the_paths(tmp_path: Path, watch) -> None:
    first, second = tmp_path / "b.json", tmp_path / "a.json"
    watcher, seen = watch(first, second, debounce=0.3)
    time.sleep(SETTLE)
    second.write_text("1")
    first.write_text("1")
    replace(second, "2")
    assert seen.wait(2)
    time.sleep(0.4)
    assert seen.paths == [first, second]


def test_a_file_in_directories_made_later_is_seen(tmp_path: Path, watch) -> None:
    path = tmp_path / "home" / ".kimi-code" / "credentials" / "kimi-code.json"
    watcher, seen = watch(path)
    time.sleep(SETTLE)
    assert set(watcher._watches) == {tmp_path}
    path.parent.mkdir(parents=True)
    time.sleep(SETTLE)
    path.write_text("{}")
    assert seen.wait(1), "the watch moved down as the directories appeared"
    assert set(watcher._watches) == {path.parent}
    assert seen.paths[0] == path


def test_without_events_the_stat_check_still_notices(tmp_path: Path, watch) -> None:
    path, quiet = tmp_path / "f.json", tmp_path / "quiet.json"
    path.write_text("1")
    quiet.write_text("1")
    watcher, seen = watch(path, quiet, use_events=False, fallback_interval=0.05)
    assert watcher.events_active is False
    time.sleep(SETTLE)
    assert seen.paths == []
    replace(path, "22")
    assert seen.wait(1)
    time.sleep(SETTLE)
    assert seen.paths == [path]


def test_a_failing_callback_does_not_stop_the_watcher(tmp_path: Path, watch, caplog) -> None:
    caplog.set_level(logging.ERROR, logger="kimi_tray.platform.watch")
    path = tmp_path / "f.json"
    _, seen = watch(path, seen=Seen(fail_first=True))
    time.sleep(SETTLE)
    path.write_text("1")
    assert seen.wait(1)
    time.sleep(SETTLE)
    replace(path, "2")
    assert seen.wait(2)
    assert "A file-change callback failed" in caplog.text


def test_an_observer_that_cannot_start_leaves_the_stat_check(tmp_path: Path, watch, monkeypatch,
                                                             caplog) -> None:
    import watchdog.observers

    class Broken:
        def __init__(self, timeout: float) -> None:
            self.stopped = False

        def start(self) -> None:
            raise OSError(28, "inotify watch limit reached")

        def stop(self) -> None:
            self.stopped = True

    monkeypatch.setattr(watchdog.observers, "Observer", Broken)
    caplog.set_level(logging.INFO, logger="kimi_tray.platform.watch")
    path = tmp_path / "f.json"
    watcher, seen = watch(path, fallback_interval=0.05)
    assert watcher.events_active is False
    assert "The file watcher could not start ([Errno 28] inotify watch limit reached); checking " \
           "the files every 0 s instead." in caplog.text
    path.write_text("1")
    assert seen.wait(1)


def test_a_change_between_the_first_look_and_the_start_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    path.write_text("1")
    seen = Seen()
    watcher = FileWatcher([path], seen, debounce=0.02)  # its first look at the file
    replace(path, "22")  # before any watch is in place
    watcher.start()
    try:
        assert watcher._thread is not None and watcher._thread.daemon is True, "never holds up exit"
        assert seen.wait(1)
        assert seen.paths == [path]
    finally:
        watcher.stop()
