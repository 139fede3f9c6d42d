"""The tray's GLib event sources on their own, quickly: GLib's file monitor as the watcher's
event source, and GLib's D-Bus client hearing logind, each delivered by a GLib main loop on a
thread of the test (the tray's gtk backend runs that loop on its main thread)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from kimi_tray.platform.resume import GLibLogindListener
from kimi_tray.platform.watch import GioEvents, PathEvent
from tests.conftest import wait_for
from tests.support.system_bus import Counter


class Events(list[tuple[str, str]]):
    def __call__(self, event: PathEvent) -> None:
        self.append((os.fsdecode(event.src_path), os.fsdecode(event.dest_path)))


def test_a_rename_over_the_file_names_both_paths(tmp_path: Path, glib_loop: None) -> None:
    """What the Kimi CLIs do (a temp file renamed over the old one) arrives as one move with its
    destination: the watcher matches the destination, the file it watches."""
    target = tmp_path / "kimi-code.json"
    target.write_text("{}")
    source, seen = GioEvents(), Events()
    source.watch(tmp_path, seen)
    temp = tmp_path / "kimi-code.json.tmp"
    temp.write_text('{"a": 1}')
    os.replace(temp, target)
    assert wait_for(lambda: (str(temp), str(target)) in seen, timeout=3), seen
    source.stop()


def test_writes_and_deletes_name_the_file(tmp_path: Path, glib_loop: None) -> None:
    target = tmp_path / "kimi-code.json"
    target.write_text("{}")
    source, seen = GioEvents(), Events()
    source.watch(tmp_path, seen)
    with target.open("a") as handle:
        handle.write(" ")
    assert wait_for(lambda: (str(target), "") in seen, timeout=3), seen
    seen.clear()
    target.unlink()
    assert wait_for(lambda: (str(target), "") in seen, timeout=3), seen
    source.stop()


def test_unwatch_and_stop_end_the_events(tmp_path: Path, glib_loop: None) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    source, seen = GioEvents(), Events()
    handle = source.watch(first, seen)
    source.watch(second, seen)
    source.unwatch(handle)
    (first / "f").write_text("x")
    (second / "f").write_text("x")
    assert wait_for(lambda: any(src == str(second / "f") for src, _ in seen), timeout=3), seen
    time.sleep(0.3)
    assert not any(src.startswith(str(first)) for src, _ in seen)
    source.stop()
    seen.clear()
    (second / "g").write_text("x")
    time.sleep(0.5)
    assert seen == []


def test_the_glib_listener_hears_only_the_wake_and_stops_hearing(system_bus, glib_loop: None) -> None:
    woken = Counter()
    listener = GLibLogindListener(woken, address=system_bus.address).start()
    assert listener.ready.is_set()
    system_bus.prepare_for_sleep(True)
    time.sleep(0.3)
    assert woken.count == 0
    system_bus.prepare_for_sleep(False)
    assert woken.event.wait(3)
    assert woken.count == 1
    listener.stop()
    system_bus.prepare_for_sleep(False)
    time.sleep(0.3)
    assert woken.count == 1, "a stopped listener hears nothing"


def test_the_glib_listener_without_a_bus_is_ready_and_quiet(tmp_path: Path, caplog) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="kimi_tray.platform.resume")
    listener = GLibLogindListener(Counter(), address=f"unix:path={tmp_path / 'no-bus'}").start()
    assert listener.ready.is_set()
    listener.stop()
    (note,) = [r for r in caplog.records if r.name == "kimi_tray.platform.resume"]
    assert note.levelno == logging.INFO and "noticing resume by the clock" in note.getMessage()
