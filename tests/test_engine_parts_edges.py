"""The engine's small parts: what it remembers (the state file), the one-owner hook, the commands'
defaults, and the event sources that feed its queue.

Real parts: state files in tmp_path, the real file watcher, a real Engine (no thread).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from kimi_tray.core.config import Settings
from kimi_tray.engine import owned
from kimi_tray.engine.commands import (
    Command,
    FetchUsage,
    FileChanged,
    GatewayRestarted,
    LoginEnded,
    Report,
    Resumed,
    UseEvents,
)
from kimi_tray.engine.events import SAFETY_POLL, EventSources, watched_paths
from kimi_tray.engine.memory import Memory
from kimi_tray.engine.scheduler import Engine
from kimi_tray.platform.watch import FALLBACK_INTERVAL
from kimi_tray.stores.state import PersistentState, StateStore
from tests.conftest import kimi_file, wait_for

NOW = 1_800_000_000.0


# ----------------------------------------------------------------------------- owned
@pytest.fixture
def hooked():
    seen: list[tuple[object, str]] = []
    owned.set_mutation_hook(lambda part, what: seen.append((part, what)))
    yield seen
    owned.set_mutation_hook(None)


def test_the_hook_hears_every_attribute_set_and_every_noted_change(hooked, tmp_path: Path) -> None:
    memory = Memory(tmp_path)
    hooked.clear()
    memory.state.last_renewal = NOW  # a change inside the state: no attribute of the part is set
    assert hooked == []
    memory.save()
    assert hooked == [(memory, "state file")]
    memory.state = memory.store.load()
    assert hooked[-1] == (memory, "state")
    owned.note_mutation(memory, "something")
    assert hooked[-1] == (memory, "something")


def test_without_a_hook_setting_attributes_works_and_records_nothing(tmp_path: Path) -> None:
    owned.set_mutation_hook(None)
    memory = Memory(tmp_path)
    memory.state.last_renewal = NOW
    memory.save()  # no hook: must not fail
    owned.note_mutation(memory, "x")
    assert StateStore(tmp_path).load().last_renewal == NOW


# ----------------------------------------------------------------------------- memory
def test_memory_starts_from_the_file_and_saves_to_it(tmp_path: Path) -> None:
    StateStore(tmp_path).save(PersistentState(last_renewal=NOW - 60))
    memory = Memory(tmp_path)
    assert memory.state.last_renewal == NOW - 60
    assert memory.path == StateStore(tmp_path).path == tmp_path / "state.json"
    memory.state.last_forced_login_warning = NOW
    memory.save()
    assert StateStore(tmp_path).load().last_forced_login_warning == NOW


def test_memory_takes_what_another_process_wrote(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="kimi_tray.engine.memory")
    memory = Memory(tmp_path)
    other = StateStore(tmp_path)
    state = other.load()
    state.dead_reason = "rejected elsewhere"
    other.save(state)
    memory.reload_if_changed_outside()
    assert memory.state.dead_reason == "rejected elsewhere"
    assert [r.getMessage() for r in caplog.records] == [
        "The state file changed outside this process; reloading it."]


def test_memory_keeps_its_state_when_the_file_says_the_same(tmp_path: Path, caplog) -> None:
    memory = Memory(tmp_path)
    memory.state.last_renewal = NOW
    memory.save()
    held = memory.state
    caplog.set_level(logging.INFO)
    memory.reload_if_changed_outside()
    assert memory.state is held
    assert "reloading" not in caplog.text


def test_memory_keeps_its_state_when_the_file_was_deleted(tmp_path: Path) -> None:
    memory = Memory(tmp_path)
    memory.state.last_renewal = NOW
    memory.save()
    memory.path.unlink()
    memory.reload_if_changed_outside()
    assert memory.state.last_renewal == NOW, "a deleted file is ours to write again, not defaults"


# ----------------------------------------------------------------------------- commands
def test_command_defaults_mean_the_ordinary_case() -> None:
    assert FetchUsage().urgent is False
    ended = LoginEnded(1, None)
    assert ended.cancelled is False and ended.error == ""
    restarted = GatewayRestarted(2, True, "done")
    assert (restarted.attempt, restarted.ok, restarted.message) == (2, True, "done")


# ----------------------------------------------------------------------------- event sources
class RecordingEngine(Engine):
    """A real engine (no thread) that also keeps every command it was sent, in order."""

    def __init__(self, settings: Settings) -> None:
        self.sent: list[Command | Report] = []
        super().__init__(settings)

    def send(self, command: Command | Report) -> None:
        self.sent.append(command)
        super().send(command)


@pytest.fixture
def engine(settings: Settings) -> RecordingEngine:
    return RecordingEngine(settings.with_overrides(openclaw_mode="off"))


def test_the_watched_paths_are_the_engines(engine: RecordingEngine) -> None:
    assert watched_paths(engine) == engine.watched_paths()
    assert engine.memory.path in watched_paths(engine)


def test_events_wake_the_engine_and_it_sleeps_up_to_the_safety_poll(engine: RecordingEngine,
                                                                    home: Path) -> None:
    assert SAFETY_POLL == 3600.0
    sources = EventSources(engine, fallback_interval=0.2).start()
    try:
        assert sources.watcher.events_active
        assert engine.sent[0] == UseEvents(SAFETY_POLL)
        path = kimi_file(home)
        path.parent.mkdir(parents=True)
        path.write_text("{}")
        assert wait_for(lambda: FileChanged(path) in engine.sent, timeout=10), engine.sent
    finally:
        sources.stop()


def test_a_redraw_step_is_the_longest_sleep_when_given(engine: RecordingEngine) -> None:
    sources = EventSources(engine, redraw_step=60.0).start()
    try:
        assert engine.sent[0] == UseEvents(60.0)
    finally:
        sources.stop()


def test_the_watcher_gets_the_fallback_interval(engine: RecordingEngine) -> None:
    assert EventSources(engine).watcher.fallback_interval == FALLBACK_INTERVAL
    assert EventSources(engine, fallback_interval=7.0).watcher.fallback_interval == 7.0


def test_a_resume_signal_becomes_a_resumed_command(engine: RecordingEngine) -> None:
    sources = EventSources(engine)
    on_resume = getattr(sources.listener, "on_resume", None)
    assert callable(on_resume), "the platform's resume listener keeps its callback"
    on_resume()
    assert engine.sent == [Resumed()]


def test_stop_ends_the_watcher_and_the_listener(engine: RecordingEngine) -> None:
    before = {t.name for t in threading.enumerate()}
    sources = EventSources(engine, fallback_interval=0.2).start()
    sources.stop()
    assert wait_for(lambda: not ({t.name for t in threading.enumerate()} - before), timeout=10), \
        {t.name for t in threading.enumerate()} - before
