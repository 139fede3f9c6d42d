"""The OpenClaw hand-off at its edges: what the view says after a sync and a gateway restart, the
retry schedule after failures, the newest token on disk, and a copy changed outside kimi-tray.

Real parts: OpenClaw 2026.6's auth-profiles.json in tmp_path written by the real file target
under OpenClaw's lock, the stand-in `openclaw` for `gateway restart`, real state files.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kimi_tray.core import logs
from kimi_tray.core.config import Settings
from kimi_tray.engine import handoff as handoff_module
from kimi_tray.engine.handoff import OPENCLAW_SYNC_LOCK, Handoff, newest_on_disk
from kimi_tray.engine.memory import Memory
from kimi_tray.stores.credentials import Credentials, CredentialSource, choose_source
from kimi_tray.stores.fileio import FileLock
from kimi_tray.stores.openclaw import legacy_profiles_path
from kimi_tray.stores.openclaw.base import Token
from kimi_tray.stores.openclaw.off_target import OffTarget
from kimi_tray.stores.state import OpenClawView, fingerprint
from tests.conftest import kimi_file, read_json, write_credentials
from tests.support.clock import FakeClock
from tests.support.oauth_server import FakeKimiOAuth
from tests.support.usage_server import FakeKimiUsage

NOW = 1_800_000_000.0


@pytest.fixture
def usage_server() -> Iterator[FakeKimiUsage]:
    """Bound but never serving: these tests ask for no usage, and skip its shutdown wait."""
    server = FakeKimiUsage()
    yield server
    server.server.server_close()


@pytest.fixture
def oauth_server() -> Iterator[FakeKimiOAuth]:
    """Bound but never serving: these tests refresh nothing, and skip its shutdown wait."""
    server = FakeKimiOAuth()
    yield server
    server.server.server_close()


@pytest.fixture
def calls_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stand-in openclaw's record of its calls (the runner passes our environment on)."""
    log = tmp_path / "openclaw-calls.jsonl"
    monkeypatch.setenv("FAKE_OPENCLAW_LOG", str(log))
    monkeypatch.delenv("FAKE_OPENCLAW_FAIL", raising=False)
    return log


def restarts(log: Path) -> int:
    if not log.exists():
        return 0
    return sum(json.loads(line)["argv"] == ["gateway", "restart"] for line in log.read_text().splitlines())


def profiles_file(settings: Settings) -> Path:
    path = legacy_profiles_path(settings.openclaw_state_dir, "main")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": 1, "profiles": {}}, indent=2) + "\n")
    return path


def on_disk(home: Path, access: str, expires_at: float) -> Credentials:
    """The Kimi file holds this token; the engine's copy of it."""
    write_credentials(kimi_file(home), {"access_token": access, "refresh_token": "rt-" + access},
                      expires_at)
    return Credentials(access, "rt-" + access, expires_at, 900)


def make(settings: Settings, clock: FakeClock, mode: str = "file") -> Handoff:
    return Handoff(settings.with_overrides(openclaw_mode=mode), clock, Memory(settings.state_dir))


def source(settings: Settings) -> CredentialSource:
    return choose_source(settings)


# ----------------------------------------------------------------------------- one sync
def test_a_sync_hands_over_the_token_and_its_expiry_then_restarts_the_gateway(
        settings: Settings, home: Path, calls_log: Path) -> None:
    clock = FakeClock(NOW)
    path = profiles_file(settings)
    creds = on_disk(home, "at-1", NOW + 900.5)
    handoff = make(settings, clock)
    view, restart = handoff.sync(creds, source(settings))
    assert restart == "OpenClaw gateway restarted." and restarts(calls_log) == 1
    assert view == OpenClawView("in_sync", "1 agent file(s) hold the current token", "file",
                                fingerprint("at-1"), int((NOW + 900.5) * 1000) / 1000, NOW)
    profile = read_json(path)["profiles"]["kimi-coding:default"]
    assert profile["access"] == "at-1" and profile["expires"] == int((NOW + 900.5) * 1000)
    assert "refresh" not in profile
    assert Memory(settings.state_dir).state.openclaw == view, "the outcome is saved for the next run"
    assert not handoff.needs_sync(creds)


def test_a_failed_gateway_restart_is_in_the_view_and_the_message(settings: Settings, home: Path,
                                                                  calls_log: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("FAKE_OPENCLAW_FAIL", "restart")
    clock = FakeClock(NOW)
    profiles_file(settings)
    creds = on_disk(home, "at-1", NOW + 900)
    view, restart = make(settings, clock).sync(creds, source(settings))
    assert restart == ("openclaw gateway restart failed: service management skipped: "
                       "non-default state dir")
    assert view.state == "in_sync" and view.token_fp == fingerprint("at-1")
    assert view.detail == "1 agent file(s) hold the current token; gateway restart failed"
    assert Memory(settings.state_dir).state.openclaw.detail == view.detail
    assert ("WARNING", restart) in [(r.levelname, r.getMessage()) for r in caplog.records], "and in the log"


def test_a_sync_that_fails_reports_why_and_restarts_nothing(settings: Settings, home: Path,
                                                            calls_log: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(NOW)
    creds = on_disk(home, "at-1", NOW + 900)  # no agent directory
    view, restart = make(settings, clock).sync(creds, source(settings))
    agent_dir = legacy_profiles_path(settings.openclaw_state_dir, "main").parent
    assert view == OpenClawView("error", f"The OpenClaw agent directory {agent_dir} does not exist.",
                                "file", checked_at=NOW)
    assert restart == "" and restarts(calls_log) == 0
    assert Memory(settings.state_dir).state.openclaw == view
    assert ("WARNING", f"OpenClaw sync failed: {view.detail}") in [(r.levelname, r.getMessage())
                                                                    for r in caplog.records]


def test_a_sync_waits_for_another_hand_off_and_says_so(settings: Settings, home: Path, calls_log: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handoff_module, "OPENCLAW_SYNC_WAIT", 0.3)
    clock = FakeClock(NOW)
    path = profiles_file(settings)
    creds = on_disk(home, "at-1", NOW + 900)
    handoff = make(settings, clock)
    other = FileLock(settings.state_dir / OPENCLAW_SYNC_LOCK, timeout=1)
    with other:
        started = time.monotonic()
        view, restart = handoff.sync(creds, source(settings))
        assert time.monotonic() - started < 2.0, "waited OPENCLAW_SYNC_WAIT, not a default"
    assert view == OpenClawView("error", "Another kimi-tray was still handing OpenClaw the token "
                                "after 0.3 s.", "file", checked_at=NOW)
    assert restart == "" and read_json(path)["profiles"] == {}
    assert Memory(settings.state_dir).state.openclaw == view


# ----------------------------------------------------------------------------- the newest token on disk
@pytest.mark.parametrize(("given", "disk", "handed"), [
    (NOW + 900, NOW + 901, "disk"), (NOW + 900, NOW + 900, "given"), (NOW + 901, NOW + 900, "given")])
def test_the_newer_of_the_given_and_the_saved_token_is_handed_over(
        settings: Settings, home: Path, given: float, disk: float, handed: str) -> None:
    write_credentials(kimi_file(home), {"access_token": "at-disk", "refresh_token": "rt-disk"}, disk)
    mine = Credentials("at-given", "rt-given", given, 900)
    assert newest_on_disk(mine, source(settings)).access_token == f"at-{handed}"


def test_an_unreadable_or_empty_saved_token_never_replaces_the_given_one(settings: Settings,
                                                                         home: Path) -> None:
    mine = Credentials("at-given", "rt-given", NOW + 900, 900)
    kimi_file(home).parent.mkdir(parents=True)
    kimi_file(home).write_text("{not json")
    assert newest_on_disk(mine, source(settings)) is mine
    write_credentials(kimi_file(home), {"access_token": "", "refresh_token": "rt-disk"}, NOW + 5000)
    assert newest_on_disk(mine, source(settings)) is mine


def test_a_slower_sync_hands_over_the_newer_token_on_disk(settings: Settings, home: Path,
                                                          calls_log: Path) -> None:
    clock = FakeClock(NOW)
    path = profiles_file(settings)
    write_credentials(kimi_file(home), {"access_token": "at-2", "refresh_token": "rt-2"}, NOW + 1800)
    view, _ = make(settings, clock).sync(Credentials("at-1", "rt-1", NOW + 900, 900), source(settings))
    assert read_json(path)["profiles"]["kimi-coding:default"]["access"] == "at-2"
    assert view.token_fp == fingerprint("at-2") and view.expires_at == NOW + 1800


# ----------------------------------------------------------------------------- retry schedule
def test_failed_syncs_retry_after_30_s_doubling_to_10_minutes(settings: Settings, home: Path,
                                                               calls_log: Path) -> None:
    clock = FakeClock(NOW)
    creds = on_disk(home, "at-1", NOW + 900)
    handoff = make(settings, clock)
    delays = []
    for _ in range(7):
        tried = clock.now()
        handoff.sync_if_due(creds, source(settings))
        seen = handoff.memory.state.openclaw
        assert seen.checked_at == tried and seen.state == "error"
        delays.append(handoff.next_sync - tried)
        clock.advance(delays[-1] - 0.5)
        assert not handoff.due(creds)
        handoff.sync_if_due(creds, source(settings))
        assert handoff.memory.state.openclaw.checked_at == tried, "no retry before its time"
        clock.advance(0.5)
        assert handoff.due(creds)
    assert delays == [30, 60, 120, 240, 480, 600, 600]

    profiles_file(settings)  # fixed: the next sync works and the backoff starts again
    handoff.sync_if_due(creds, source(settings))
    assert handoff.memory.state.openclaw.state == "in_sync" and not handoff.due(creds)
    legacy_profiles_path(settings.openclaw_state_dir, "main").unlink()
    legacy_profiles_path(settings.openclaw_state_dir, "main").parent.rmdir()
    newer = on_disk(home, "at-2", NOW + 9000)
    tried = clock.now()
    handoff.sync_if_due(newer, source(settings))
    assert handoff.memory.state.openclaw.state == "error" and handoff.next_sync == tried + 30


class Scripted(OffTarget):
    """An active target that reports the given states (stale, missing: OpenClaw took the write
    but holds something else), so the retry rule is seen for each of them."""

    mode = "scripted"
    active = True

    def __init__(self, states: list[str]) -> None:
        super().__init__("scripted")
        self.states = states

    def sync(self, token: Token, now: float) -> OpenClawView:
        return OpenClawView(self.states.pop(0), "scripted", self.mode, "", checked_at=now)


def test_stale_and_missing_copies_are_retried_like_errors(settings: Settings, home: Path) -> None:
    clock = FakeClock(NOW)
    creds = on_disk(home, "at-1", NOW + 900)
    handoff = Handoff(settings, clock, Memory(settings.state_dir),
                      Scripted(["stale", "missing", "error", "in_sync", "stale"]))
    for delay in (30, 60, 120):
        handoff.sync_if_due(creds, source(settings))
        assert handoff.next_sync == clock.now() + delay
        clock.advance(delay)
    handoff.sync_if_due(creds, source(settings))  # in_sync: the count starts again
    assert handoff.next_sync == clock.now(), "no new wait after a success"
    handoff.sync_if_due(creds, source(settings))
    assert handoff.next_sync == clock.now() + 30


# ----------------------------------------------------------------------------- needs sync, recheck
def test_an_inactive_target_needs_one_sync_to_say_it_is_off(settings: Settings, home: Path) -> None:
    clock = FakeClock(NOW)
    creds = on_disk(home, "at-1", NOW + 900)
    handoff = make(settings, clock, mode="off")
    assert not handoff.active and handoff.mode == "off"
    assert handoff.needs_sync(creds) and handoff.due(creds)
    handoff.sync_if_due(creds, source(settings))
    assert handoff.memory.state.openclaw.state == "off"
    assert not handoff.needs_sync(creds) and not handoff.due(creds)


def test_a_copy_rewritten_outside_kimi_tray_is_handed_over_again(settings: Settings, home: Path,
                                                                 calls_log: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="kimi_tray.engine.handoff")
    clock = FakeClock(NOW)
    path = profiles_file(settings)
    creds = on_disk(home, "at-1", NOW + 900)
    handoff = make(settings, clock)
    handoff.sync(creds, source(settings))
    handoff.next_sync = NOW + 500
    handoff.recheck(creds)  # still ours: nothing changes
    assert handoff.memory.state.openclaw.state == "in_sync" and handoff.next_sync == NOW + 500
    handoff.recheck(None)
    assert handoff.next_sync == NOW + 500

    data = read_json(path)
    data["profiles"]["kimi-coding:default"]["access"] = "at-someone-else"
    path.write_text(json.dumps(data))
    clock.advance(7)
    handoff.recheck(creds)
    view = Memory(settings.state_dir).state.openclaw
    assert view.state == "stale" and view.detail == "OpenClaw holds an older Kimi token."
    assert view.checked_at == NOW + 7 and handoff.next_sync == 0.0 and handoff.due(creds)
    assert ("INFO", "OpenClaw's copy changed outside kimi-tray (OpenClaw holds an older Kimi token.); "
            "handing the token over again.") in [(r.levelname, r.getMessage()) for r in caplog.records]

    handoff.next_sync = NOW + 500
    handoff.recheck(creds)  # already known to be stale: no second look
    assert handoff.next_sync == NOW + 500


def test_describe_and_watched_files_come_from_the_target(settings: Settings) -> None:
    handoff = make(settings, FakeClock(NOW))
    path = legacy_profiles_path(settings.openclaw_state_dir, "main")
    assert handoff.active and handoff.mode == "file"
    assert handoff.watched_files() == [path]
    assert handoff.describe() == f"OpenClaw auth-profiles.json ({path}), profile kimi-coding:default"
    off = make(settings, FakeClock(NOW), mode="off")
    assert off.watched_files() == [] and off.restart_gateway()[0] is False


# ----------------------------------------------------------------------------- OpenClaw 2026.9 (its CLI)
CLI_TOKEN = "at-cli-" + "k" * 24 + "-end"  # long enough for OpenClaw's masked label


def paste_calls(log: Path) -> list[list[str]]:
    return [call["argv"] for call in map(json.loads, log.read_text().splitlines())
            if call["argv"][:3] == ["models", "auth", "paste-token"]]


def test_openclaw_is_promised_less_than_the_token_lives(settings: Settings, home: Path,
                                                       calls_log: Path) -> None:
    """paste-token gets an expiry the token outlives by a margin (5 s + 1.5 x the first guess of
    10 s for a call), and no gateway restart: paste-token reloads a running gateway itself."""
    clock = FakeClock(time.time())
    creds = on_disk(home, CLI_TOKEN, clock.now() + 900)
    handoff = make(settings, clock, mode="cli")
    view, restart = handoff.sync(creds, source(settings))
    assert restart == "" and restarts(calls_log) == 0
    (argv,) = paste_calls(calls_log)
    expires_in = int(argv[argv.index("--expires-in") + 1].rstrip("s"))
    assert 900 - 20 - 3 <= expires_in <= 900 - 20
    assert view.state == "in_sync" and view.mode == "cli" and view.token_fp == fingerprint(CLI_TOKEN)
    assert view.detail == "profile kimi:oauth holds the current token"
    assert view.expires_at is not None and view.expires_at <= creds.expires_at - 19
    assert Memory(settings.state_dir).state.openclaw == view


def test_a_recheck_that_openclaw_cannot_answer_is_an_error_to_sync_again(
        settings: Settings, home: Path, calls_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(time.time())
    creds = on_disk(home, CLI_TOKEN, clock.now() + 900)
    make(settings, clock, mode="cli").sync(creds, source(settings))
    monkeypatch.setenv("FAKE_OPENCLAW_FAIL", "migration")
    handoff = make(settings, clock, mode="cli")  # a later process: the view comes from the state file
    handoff.next_sync = clock.now() + 500
    monkeypatch.delenv("FAKE_OPENCLAW_FAIL")
    make(settings, clock, mode="cli").recheck(creds)  # OpenClaw still holds ours: nothing to do
    assert Memory(settings.state_dir).state.openclaw.state == "in_sync"
    clock.advance(3)
    handoff.recheck(creds)
    view = Memory(settings.state_dir).state.openclaw
    assert view.state == "error" and view.mode == "cli" and view.checked_at == clock.now()
    assert view.detail.startswith("openclaw models status failed: Auth profile store ")
    assert view.detail.endswith("requires legacy credential migration; affected providers: kimi-coding; "
                                "run openclaw doctor --fix.")
    assert handoff.next_sync == 0.0 and handoff.due(creds)


def test_a_failed_restart_after_a_sync_with_nothing_to_say_is_the_whole_detail(settings: Settings,
                                                                              home: Path) -> None:
    class Quiet(Scripted):
        restart_after_sync = True

        def sync(self, token: Token, now: float) -> OpenClawView:
            return OpenClawView("in_sync", "", self.mode, fingerprint(token.access), checked_at=now)

    creds = on_disk(home, "at-1", NOW + 900)
    handoff = Handoff(settings, FakeClock(NOW), Memory(settings.state_dir), Quiet([]))
    view, restart = handoff.sync(creds, source(settings))
    assert restart == "OpenClaw sync is off; there is no gateway to restart."
    assert view.detail == "gateway restart failed"


def test_the_hand_off_leaves_the_kimi_file_as_it_is_and_masks_its_tokens(settings: Settings,
                                                                        home: Path) -> None:
    import stat

    write_credentials(kimi_file(home), {"access_token": "at-disk-newer-1234",
                                        "refresh_token": "rt-disk-newer-1234"}, NOW + 1800)
    kimi_file(home).chmod(0o644)  # the Kimi CLI's business (the renewal fixes it under its lock)
    mine = Credentials("at-given", "rt-given", NOW + 900, 900)
    assert newest_on_disk(mine, source(settings)).access_token == "at-disk-newer-1234"
    assert stat.S_IMODE(kimi_file(home).stat().st_mode) == 0o644
    assert logs.redact("at-disk-newer-1234 rt-disk-newer-1234") == "[redacted] [redacted]"



def test_a_rewrite_landing_while_openclaw_is_looked_at_still_makes_the_hand_off_due(
        settings: Settings, home: Path, calls_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another program rewrites the file between the two reads of one look (the profile check,
    then the problems scan): the view lists the old token as a problem yet names ours, and the
    hand-off must still be due. Seen in an engine test about one run in three: the old token
    then stayed in OpenClaw until the next renewal."""
    clock = FakeClock(NOW)
    path = profiles_file(settings)
    creds = on_disk(home, "at-1", NOW + 900)
    handoff = make(settings, clock)
    handoff.sync(creds, source(settings))
    target = handoff.target
    scan = target.find_problems

    def rewritten_meanwhile(token: Token) -> list:
        data = read_json(path)
        data["profiles"]["kimi-coding:default"]["access"] = "at-old"
        path.write_text(json.dumps(data))
        return scan(token)

    monkeypatch.setattr(target, "find_problems", rewritten_meanwhile)
    handoff.recheck(creds)
    monkeypatch.undo()
    view = handoff.memory.state.openclaw
    assert view.state != "in_sync" and "holds an older token" in view.detail
    assert handoff.due(creds)
    handoff.sync_if_due(creds, source(settings))
    assert read_json(path)["profiles"]["kimi-coding:default"]["access"] == "at-1"
    assert handoff.memory.state.openclaw.state == "in_sync"
