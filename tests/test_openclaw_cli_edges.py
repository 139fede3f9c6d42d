"""The OpenClaw CLI side at its edges, against the stand-in `openclaw` (tests/support/fake_openclaw.py)
and tiny shell stand-ins: how its answers are read (masked labels, expiries, errors), the expiry
promised to paste-token, what is asked once and what again, and what `doctor` says."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import pytest

from kimi_tray.core.checks import Check
from kimi_tray.core.config import Settings
from kimi_tray.core.errors import OpenClawError
from kimi_tray.stores.openclaw import cli_target as cli_module
from kimi_tray.stores.openclaw.base import Problem, Token, holding_view, mask_matches
from kimi_tray.stores.openclaw.checks import (
    command_check,
    gateway_checks,
    plugin_checks,
    problem_checks,
)
from kimi_tray.stores.openclaw.cli_target import CliTarget, auth_order_problems
from kimi_tray.stores.openclaw.detect import (
    PLUGIN_FIX,
    Detector,
    generation_of,
    kimi_plugin_listed,
    sanitize,
)
from kimi_tray.stores.openclaw.runner import Runner, last_line
from kimi_tray.stores.state import OpenClawMemory, OpenClawView, fingerprint
from tests.conftest import SUPPORT, calls
from tests.support.offline import offline_env, offline_settings

ACCESS = "eyJhbGciOi-0123456789-abcdefghijkl-tail7890"
MASK = f"{ACCESS[:8]}...{ACCESS[-7:]}"  # what the stand-in (like OpenClaw) shows


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return offline_env(tmp_path)


@pytest.fixture
def settings(env: dict[str, str], tmp_path: Path) -> Settings:
    return offline_settings(env, tmp_path)


@pytest.fixture
def logged(env, monkeypatch) -> dict[str, str]:
    """Runners copy our environment when made: let the stand-in record its calls."""
    monkeypatch.setenv("FAKE_OPENCLAW_LOG", env["FAKE_OPENCLAW_LOG"])
    return env


def seed_store(settings: Settings, **profiles: dict) -> None:
    store = settings.openclaw_state_dir / "fake-store.json"
    store.parent.mkdir(parents=True, exist_ok=True)
    store.write_text(json.dumps(profiles))


def pastes(env: dict[str, str]) -> list[list[str]]:
    return [c["argv"] for c in calls(env) if c["argv"][:3] == ["models", "auth", "paste-token"]]


def expires_in(argv: list[str]) -> int:
    return int(argv[argv.index("--expires-in") + 1].rstrip("s"))


def shell_openclaw(settings: Settings, tmp_path: Path, script: str) -> Settings:
    """An `openclaw` that is a few lines of shell: for answers the stand-in never gives."""
    path = tmp_path / "bin" / "sh-openclaw"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return settings.with_overrides(openclaw_command=(str(path),))


# -- base
@pytest.mark.parametrize(("mask", "token", "matches"), [
    ("abcd...wxyz", "abcd-middle-wxyz", True),
    ("abcd...wxyz", "abcdwxyz", True),  # just long enough
    ("abcd...dwxyz", "abcdwxyz", False),  # prefix and suffix would overlap
    ("abc...wxyz", "abc-middle-wxyz", False),  # too little shown to tell tokens apart
    ("abcd...xyz", "abcd-middle-xyz", False),
    ("abcd-middle-wxyz", "abcd-middle-wxyz", False),  # not a mask
    ("abcd...wxyz", "abce-middle-wxyz", False),
    ("abcd...wxyz", "abcd-middle-wxyZ", False),
    ("", "abcd", False),
])
def test_a_masked_label_matches_only_the_token_it_shows(mask: str, token: str, matches: bool) -> None:
    assert mask_matches(mask, token) is matches


def test_a_token_never_shows_its_access_token() -> None:
    assert repr(Token(ACCESS, 12.5)) == "Token(expires_at=12.5)"


def test_holding_view_is_an_error_only_for_a_fatal_problem() -> None:
    token = Token(ACCESS, 1000.0)
    warn = Problem("a warning", "fix it", fatal=False)
    fatal = Problem("first fatal", "fix")
    view = holding_view([warn, fatal, Problem("second fatal", "fix")], token, "cli", 990.0, 5.0, "ok")
    assert view == OpenClawView("error", "first fatal", "cli", fingerprint(ACCESS), 990.0, 5.0)
    view = holding_view([warn], token, "file", None, 5.0, "all good")
    assert view == OpenClawView("in_sync", "all good", "file", fingerprint(ACCESS), None, 5.0)


# -- runner
def test_runner_points_openclaw_at_a_non_default_state_dir_only(settings: Settings,
                                                                monkeypatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    runner = Runner(settings)
    assert runner.env["OPENCLAW_STATE_DIR"] == str(settings.openclaw_state_dir)
    assert runner.env["NO_COLOR"] == "1"
    monkeypatch.setenv("NO_COLOR", "0")
    monkeypatch.delenv("OPENCLAW_STATE_DIR", raising=False)
    default = Runner(settings.with_overrides(openclaw_state_dir=Path.home() / ".openclaw"))
    assert "OPENCLAW_STATE_DIR" not in default.env and default.env["NO_COLOR"] == "0"


def test_runner_json_skips_notices_and_names_every_failure(settings: Settings,
                                                           tmp_path: Path) -> None:
    runner = Runner(shell_openclaw(settings, tmp_path, """
case "$1" in
  notice) echo 'Config warnings: none'; echo '{"a": 1}';;
  fail) echo 'first'; echo 'Error: it broke' >&2; exit 3;;
  text) echo 'no json here';;
  quiet) exit 4;;
  slow) sleep 5;;
esac
"""))
    assert runner.json(["notice", "--json"]) == {"a": 1}
    with pytest.raises(OpenClawError) as failed:
        runner.json(["fail", "x", "--json"])
    assert str(failed.value) == "openclaw fail x failed: first", "its last line of output"
    with pytest.raises(OpenClawError) as text:
        runner.json(["text", "--json"])
    assert str(text.value) == "openclaw text --json did not print JSON."
    with pytest.raises(OpenClawError) as quiet:
        runner.json(["quiet"])
    assert str(quiet.value) == "openclaw quiet failed: exit code 4"
    started = time.monotonic()
    with pytest.raises(OpenClawError) as slow:
        runner.run(["slow", "a", "b", "c"], timeout=0.2)
    assert str(slow.value) == "openclaw slow a b did not finish in 0.2 s."
    assert time.monotonic() - started < 3


def test_runner_without_the_command_says_which(settings: Settings, tmp_path: Path) -> None:
    runner = Runner(settings.with_overrides(openclaw_command=(str(tmp_path / "nope"), "x")))
    with pytest.raises(OpenClawError) as missing:
        runner.run(["--version"])
    assert str(missing.value) == f"The openclaw command ({tmp_path / 'nope'}) was not found."
    assert runner.restart_gateway() == (False, str(missing.value))


def test_version_is_the_last_line_and_failures_say_why(settings: Settings, tmp_path: Path) -> None:
    runner = Runner(shell_openclaw(settings, tmp_path, """
[ -n "$BROKEN" ] && { echo 'node too old' >&2; exit 1; }
[ -n "$SILENT" ] && exit 0
echo; echo 'Update available'; echo '  OpenClaw 2026.6.1 (abc)  '; echo
"""))
    assert runner.version() == "OpenClaw 2026.6.1 (abc)"
    runner.env["SILENT"] = "1"
    with pytest.raises(OpenClawError, match=r"^openclaw --version failed: exit code 0$"):
        runner.version()
    runner.env["BROKEN"] = "1"
    with pytest.raises(OpenClawError, match=r"^openclaw --version failed: node too old$"):
        runner.version()


def test_gateway_restart_reports_success_and_failure(settings: Settings, tmp_path: Path) -> None:
    runner = Runner(shell_openclaw(settings, tmp_path, """
[ -n "$FAIL" ] && { echo 'service management skipped' >&2; exit 1; }
echo restarted
"""))
    assert runner.restart_gateway() == (True, "OpenClaw gateway restarted.")
    runner.env["FAIL"] = "1"
    assert runner.restart_gateway() == (False,
                                        "openclaw gateway restart failed: service management skipped")


def completed(stdout: str = "", stderr: str = "", code: int = 1):
    import subprocess

    return subprocess.CompletedProcess([], code, stdout, stderr)


def test_last_line_prefers_openclaws_json_error_message() -> None:
    error = json.dumps({"ok": False, "error": {"message": "  needs migration  "}}, indent=2)
    assert last_line(completed("notice\n" + error, "Reason: other")) == "needs migration"
    assert last_line(completed(json.dumps({"error": {"message": "m" * 400}}))) == "m" * 300
    blank = json.dumps({"error": {"message": "  "}})
    assert last_line(completed(blank, "stderr line")) == blank
    flat = json.dumps({"error": "flat"}, indent=2)
    assert last_line(completed(flat, "")) == "}"
    assert last_line(completed("out 1\nout 2\n", "err 1\n")) == "out 2"
    assert last_line(completed("", "e" * 250)) == "e" * 200
    assert last_line(completed("", "  \n", code=7)) == "exit code 7"
    assert last_line(completed("[1]", "")) == "[1]"


# -- detect
@pytest.mark.parametrize(("store", "generation"), [
    ("/h/.openclaw/agents/main/agent/auth-profiles.json", "file"),
    ("/h/.openclaw/state/openclaw.sqlite", "cli"),
    ("/h/.openclaw/state/openclaw.db", None), ("", None)])
def test_the_store_path_tells_the_generation(store: str, generation: str | None) -> None:
    assert generation_of(store) == generation


def test_sanitize_drops_what_a_hand_edited_state_file_got_wrong() -> None:
    good = OpenClawMemory("OpenClaw 1", "file", "/x.json", False, 10.0, 0.0)
    assert sanitize(OpenClawMemory(**vars(good))) == good
    bad = sanitize(OpenClawMemory(7, "file", "/x", "yes", True, -1.0))  # type: ignore[arg-type]
    assert bad == OpenClawMemory("", "", "", None, None, None)
    assert sanitize(OpenClawMemory("v", "sqlite", "/x")) == OpenClawMemory()
    assert sanitize(OpenClawMemory("v", "cli", 5)).store_path == ""  # type: ignore[arg-type]
    assert sanitize(OpenClawMemory(call_seconds="3")).call_seconds is None  # type: ignore[arg-type]
    assert sanitize(OpenClawMemory(plugin_checked_at=3)).plugin_checked_at == 3


def test_generation_is_asked_once_per_version(settings: Settings, logged, monkeypatch) -> None:
    memory = OpenClawMemory(kimi_plugin=True, plugin_checked_at=5.0)
    detector = Detector(Runner(settings), memory)
    assert detector.generation() == "cli"
    assert memory.version == "OpenClaw 2026.9.6 (fake)"
    assert memory.store_path == str(settings.openclaw_state_dir / "state" / "openclaw.sqlite")
    assert (memory.kimi_plugin, memory.plugin_checked_at) == (None, None), "a new version: ask again"
    assert detector.generation() == "cli"
    assert [c["argv"] for c in calls(logged)] == [["--version"], ["models", "status", "--json"],
                                                 ["--version"]]
    monkeypatch.setenv("FAKE_OPENCLAW_VERSION", "OpenClaw 2026.6.1 (fake)")
    monkeypatch.setenv("FAKE_OPENCLAW_STORE_PATH", "/s/agents/main/agent/auth-profiles.json")
    detector.runner = Runner(settings)
    assert detector.generation() == "file" and memory.version == "OpenClaw 2026.6.1 (fake)"


def test_a_broken_cli_keeps_the_remembered_generation(settings: Settings, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_OPENCLAW_FAIL", "version")
    remembered = Detector(Runner(settings), OpenClawMemory("OpenClaw 2026.6.1", "file", "/x.json"))
    assert remembered.generation() == "file"
    with pytest.raises(OpenClawError, match="--version failed"):
        Detector(Runner(settings), OpenClawMemory()).generation()


def test_a_store_path_of_no_known_kind_is_an_error(settings: Settings, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_OPENCLAW_STORE_PATH", "/s/credentials.db")
    memory = OpenClawMemory()
    with pytest.raises(OpenClawError) as unknown:
        Detector(Runner(settings), memory).generation()
    assert str(unknown.value) == (
        "OpenClaw 2026.9.6 (fake) did not say where it keeps credentials (no auth.storePath in "
        "`openclaw models status --json`); set openclaw_mode to cli or file.")
    assert memory == OpenClawMemory()


def test_a_present_plugin_is_remembered_a_missing_one_asked_again_after_15_minutes(
        settings: Settings, logged, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_OPENCLAW_NO_KIMI_PLUGIN", "1")
    memory = OpenClawMemory()
    detector = Detector(Runner(settings), memory)
    assert detector.kimi_plugin(1000.0) is False and memory.plugin_checked_at == 1000.0
    assert detector.kimi_plugin(1000.0 + 899) is False  # remembered
    assert detector.kimi_plugin(1000.0 - 1) is False  # the clock went back: asked
    assert memory.plugin_checked_at == 999.0
    assert detector.kimi_plugin(999.0 + 900) is False  # 15 minutes on: asked
    assert detector.kimi_plugin(1899.0, fresh=True) is False  # doctor always asks
    asked = [c for c in calls(logged) if c["argv"][:2] == ["plugins", "list"]]
    assert len(asked) == 4
    monkeypatch.delenv("FAKE_OPENCLAW_NO_KIMI_PLUGIN")
    detector.runner = Runner(settings)
    assert detector.kimi_plugin(1900.0, fresh=True) is True
    assert detector.kimi_plugin(99999.0) is True  # present: never asked again for this version
    assert len([c for c in calls(logged) if c["argv"][:2] == ["plugins", "list"]]) == 5


def test_only_an_enabled_plugin_providing_kimi_counts() -> None:
    kimi = {"id": "kimi", "providerIds": ["kimi-code"]}
    assert kimi_plugin_listed({"plugins": [kimi]}) is True
    assert kimi_plugin_listed({"plugins": ["kimi", {**kimi, "enabled": False}]}) is False
    assert kimi_plugin_listed({"plugins": [{**kimi, "enabled": None}]}) is True
    assert kimi_plugin_listed({"plugins": [{"providerIds": ["openai"]}, kimi]}) is True
    assert kimi_plugin_listed({"plugins": [{"id": "kimi"}]}) is False
    assert kimi_plugin_listed({"plugins": None}) is False and kimi_plugin_listed({}) is False


# -- the CLI target: what it pastes
def test_paste_promises_the_lifetime_minus_the_margin(settings: Settings, logged) -> None:
    now = time.time()
    target = CliTarget(settings, OpenClawMemory(call_seconds=2.0))
    view = target.sync(Token(ACCESS, now + 900), now)
    (argv,) = pastes(logged)
    # 5 s + 1.5 x the 2 s the last call took; the seconds this sync spent come off too.
    assert 885 <= expires_in(argv) <= 891
    assert argv[:7] == ["models", "auth", "paste-token", "--provider", "kimi", "--profile-id",
                        "kimi:oauth"] and "--agent" not in argv
    assert [c for c in calls(logged) if "stdin_fp" in c] != [], "the token came on stdin"
    assert ACCESS not in json.dumps(calls(logged))
    assert view.state == "in_sync" and view.detail == "profile kimi:oauth holds the current token"
    assert view.token_fp == fingerprint(ACCESS) and view.mode == "cli"
    assert view.expires_at is not None and abs(view.expires_at - (now + expires_in(argv))) < 5
    assert target.memory.call_seconds is not None and target.memory.call_seconds < 5


@pytest.mark.parametrize(("plugin", "margin"), [(None, 20), (False, 185)])
def test_a_first_paste_guesses_its_margin(settings: Settings, logged, monkeypatch,
                                          plugin: bool | None, margin: int) -> None:
    if plugin is False:
        monkeypatch.setenv("FAKE_OPENCLAW_NO_KIMI_PLUGIN", "1")
    now = time.time()
    CliTarget(settings, OpenClawMemory(kimi_plugin=plugin)).sync(Token(ACCESS, now + 900), now)
    (argv,) = pastes(logged)
    assert 900 - margin - 6 <= expires_in(argv) <= 900 - margin - 1


def test_every_agent_but_main_gets_its_own_paste(settings: Settings, logged) -> None:
    settings = settings.with_overrides(openclaw_agents=("main", "coder", "main"))
    now = time.time()
    CliTarget(settings, OpenClawMemory(call_seconds=0.0)).sync(Token(ACCESS, now + 900), now)
    agents = [a[a.index("--agent") + 1] if "--agent" in a else None for a in pastes(logged)]
    assert agents == [None, "coder"]


def test_a_token_about_to_expire_is_not_handed_over(settings: Settings, logged) -> None:
    now = time.time()
    target = CliTarget(settings, OpenClawMemory(call_seconds=10.0, kimi_plugin=True))
    with pytest.raises(OpenClawError) as expiring:
        target.sync(Token(ACCESS, now + 20.5), now)  # margin 20 s: less than a second left
    assert str(expiring.value) == "The Kimi token is about to expire; OpenClaw was not given it."
    assert pastes(logged) == []
    target.sync(Token(ACCESS, now + 22.9), now)  # two seconds left: OpenClaw gets it
    assert [expires_in(a) for a in pastes(logged)] in ([2], [1])


def test_a_paste_slower_than_its_margin_is_done_again_with_a_wider_one(settings: Settings,
                                                                        logged, monkeypatch) -> None:
    class Clock:
        """Every reading is 30 s after the last one: each openclaw call takes 30 s."""

        def __init__(self) -> None:
            self.now = 0.0

        def monotonic(self) -> float:
            self.now += 30.0
            return self.now

    monkeypatch.setattr(cli_module, "time", Clock())
    memory = OpenClawMemory(kimi_plugin=True)
    CliTarget(settings, memory).sync(Token(ACCESS, 10_000.0 + 900), 10_000.0)
    # 1st: 900 - 30 (clock) - 20 (first guess); took 30 > 20, so again with 5 + 1.5 x 30 after 4 ticks.
    assert [expires_in(a) for a in pastes(logged)] == [850, 730]
    assert memory.call_seconds == 30.0


def test_a_failed_paste_says_what_openclaw_said(settings: Settings, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_OPENCLAW_FAIL", "paste-token")
    now = time.time()
    target = CliTarget(settings, OpenClawMemory(call_seconds=0.0, kimi_plugin=True))
    with pytest.raises(OpenClawError) as failed:
        target.sync(Token(ACCESS, now + 900), now)
    assert str(failed.value) == "openclaw models auth paste-token failed: Error: gateway exploded"
    assert target.memory.call_seconds == 0.0


def test_a_gateway_that_did_not_reload_is_said(settings: Settings, tmp_path: Path, logged) -> None:
    fake = f"{sys.executable} {SUPPORT / 'fake_openclaw.py'}"
    settings = shell_openclaw(settings, tmp_path, f"""
if [ "$3" = paste-token ]; then {fake} "$@"; echo 'gateway: could not refresh (not running)' >&2;
else exec {fake} "$@"; fi
""")
    now = time.time()
    target = CliTarget(settings, OpenClawMemory(call_seconds=0.0, kimi_plugin=True))
    view = target.sync(Token(ACCESS, now + 900), now)
    assert target.gateway_reloaded is False
    assert view.detail == "profile kimi:oauth holds the current token; no running gateway picked it up"
    checks = gateway_checks(target.runner, view)
    assert checks == [Check("warn", "openclaw gateway",
                            "not running; it reads the current token when it starts",
                            "openclaw gateway start")]


# -- the CLI target: reading what OpenClaw holds
def test_inspect_tells_missing_stale_and_current_profiles_apart(settings: Settings) -> None:
    now = 1_800_000_000.0
    token = Token(ACCESS, now + 900)
    target = CliTarget(settings)
    assert target.inspect(token, now) == OpenClawView(
        "missing", "OpenClaw has no kimi:oauth profile.", "cli", checked_at=now)

    def holding(label: str, expires_at: float) -> OpenClawView:
        seed_store(settings, **{"kimi:oauth": {"label": label, "expiresAt": expires_at * 1000}})
        return target.inspect(token, now)

    assert holding("eyJhbGci...other12", now + 800) == OpenClawView(
        "stale", "OpenClaw holds an older Kimi token.", "cli", expires_at=now + 800, checked_at=now)
    assert holding(MASK, now + 902) == OpenClawView(
        "stale", "OpenClaw believes the token lives longer than it does.", "cli",
        expires_at=now + 902, checked_at=now)
    assert holding(MASK, now) == OpenClawView(
        "stale", "OpenClaw's Kimi token has expired.", "cli", expires_at=now, checked_at=now)
    current = holding(MASK, now + 901)
    assert (current.state, current.expires_at) == ("in_sync", now + 901)
    assert holding(MASK, now + 0.5).state == "in_sync"
    seed_store(settings, **{"kimi:oauth": {"label": MASK}})
    assert target.inspect(token, now).expires_at is None
    assert target.inspect(token, now).state == "in_sync"


def test_problems_name_each_profile_holding_an_older_token_with_its_fix(settings: Settings) -> None:
    now = 1_800_000_000.0
    token = Token(ACCESS, now + 900)
    seed_store(settings, **{
        "kimi:oauth": {"label": MASK, "expiresAt": (now + 800) * 1000},
        "kimi-coding:default": {"label": "eyJhbGci...older12", "provider": "kimi-coding",
                                "type": "oauth"},
        "kimi:work": {"label": "eyJhbGci...older34"},
        "kimi:key": {"label": "sk-u...own1", "type": "api_key"},
        "kimi:same": {"label": MASK},
        "openai:x": {"label": "eyJhbGci...older56", "provider": "openai"},
    })
    target = CliTarget(settings, OpenClawMemory(kimi_plugin=False))
    view = target.inspect(token, now)
    assert target.problems == [
        Problem("OpenClaw's Kimi provider plugin is not installed, so OpenClaw cannot use Kimi.",
                PLUGIN_FIX),
        Problem("OpenClaw's Kimi profile kimi-coding:default (provider kimi-coding) holds an older "
                "token.", "kimi-tray renew"),
        Problem("OpenClaw's Kimi profile kimi:work (provider kimi) holds an older token.",
                "openclaw models auth logout kimi:work --yes"),
    ]
    assert view.state == "error" and view.detail == target.problems[0].text
    assert view.token_fp == fingerprint(ACCESS)


def test_a_carried_over_legacy_token_profile_is_kept_current_but_an_api_key_never(
        settings: Settings, logged) -> None:
    now = time.time()
    token = Token(ACCESS, now + 900)
    seed_store(settings, **{"kimi-coding:default": {"label": "eyJhbGci...older12",
                                                   "provider": "kimi-code", "type": "oauth"}})
    CliTarget(settings, OpenClawMemory(call_seconds=0.0, kimi_plugin=True)).sync(token, now)
    assert [(a[4], a[6]) for a in pastes(logged)] == [("kimi", "kimi:oauth"),
                                                      ("kimi-code", "kimi-coding:default")]
    Path(logged["FAKE_OPENCLAW_LOG"]).unlink()
    view = CliTarget(settings, OpenClawMemory(call_seconds=0.0, kimi_plugin=True)).sync(token, now)
    assert len(pastes(logged)) == 1, "already current: pasted once"
    assert view.state == "in_sync"
    Path(logged["FAKE_OPENCLAW_LOG"]).unlink()
    seed_store(settings, **{"kimi-coding:default": {"label": "sk-u...own1", "type": "api_key",
                                                   "provider": "kimi-coding"}})
    CliTarget(settings, OpenClawMemory(call_seconds=0.0, kimi_plugin=True)).sync(token, now)
    assert [a[6] for a in pastes(logged)] == ["kimi:oauth"]


def test_auth_order_ours_first_a_key_first_or_a_token_first() -> None:
    def report(*effective: dict) -> dict:
        return {"auth": {"oauth": {"providers": [
            {"provider": "openai", "effectiveProfiles": [{"profileId": "x"}]},
            {"provider": "kimi", "effectiveProfiles": list(effective)}]}}}

    assert auth_order_problems({}, "kimi", "kimi:oauth") == []
    assert auth_order_problems(report(), "kimi", "kimi:oauth") == []
    assert auth_order_problems(report({"profileId": "kimi:oauth"}, {"profileId": "k:2"}), "kimi",
                               "kimi:oauth") == [
        Problem("kimi:oauth is used first", "", fatal=False, check="openclaw auth order")]
    key_first = auth_order_problems(report({"profileId": "kimi:key", "type": "api_key"},
                                           {"profileId": "kimi:oauth", "type": "token"},
                                           {"profileId": "kimi:b"}), "kimi", "kimi:oauth")
    assert key_first == [Problem(
        "OpenClaw uses kimi:key before kimi:oauth",
        "openclaw models auth order set --provider kimi kimi:oauth kimi:key kimi:b",
        fatal=False, check="openclaw auth order")]
    for kind in ("token", "oauth"):
        (token_first,) = auth_order_problems(report({"profileId": "kimi:t", "type": kind}), "kimi",
                                             "kimi:oauth")
        assert token_first.fatal is True
        assert token_first.fix == "openclaw models auth order set --provider kimi kimi:oauth kimi:t"


# -- doctor
def test_command_check_finds_the_command_or_says_how_to_get_it(settings: Settings,
                                                              tmp_path: Path) -> None:
    command = settings.openclaw_command[0]
    assert command_check(command, required=True) == Check("ok", "openclaw command", command)
    missing = str(tmp_path / "none")
    fix = "install OpenClaw (npm install -g openclaw) or set openclaw_command"
    assert command_check(missing, required=True) == Check(
        "fail", "openclaw command", f"{missing} is not on PATH", fix)
    assert command_check(missing, required=False).level == "warn"


def test_problem_checks_levels_and_the_all_clear_line() -> None:
    problems = [Problem("plugin", PLUGIN_FIX), Problem("fatal", "fix 1"),
                Problem("warning", "fix 2", fatal=False, check="openclaw auth order"),
                Problem("fine", "", check="openclaw auth order")]
    assert problem_checks(problems) == [
        Check("fail", "openclaw profiles", "fatal", "fix 1"),
        Check("warn", "openclaw auth order", "warning", "fix 2"),
        Check("ok", "openclaw auth order", "fine", ""),
    ]
    assert problem_checks(problems[2:]) == [
        Check("warn", "openclaw auth order", "warning", "fix 2"),
        Check("ok", "openclaw auth order", "fine", ""),
        Check("ok", "openclaw profiles", "every Kimi profile holds the current token")]


def test_gateway_check_running_down_or_not_reloaded(settings: Settings, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_OPENCLAW_GATEWAY_RUNNING", "1")
    runner = Runner(settings)
    assert gateway_checks(runner, OpenClawView(detail="fine")) == [
        Check("ok", "openclaw gateway", "running with the current token")]
    failed = [Check("fail", "openclaw gateway",
                    "running, but it did not take the current token after the last renewal",
                    "openclaw gateway restart")]
    assert gateway_checks(runner, OpenClawView(detail="x; gateway restart failed: y")) == failed
    assert gateway_checks(runner, OpenClawView(detail="ok; no running gateway picked it up")) == failed
    broken = Runner(settings.with_overrides(openclaw_command=("/nonexistent/openclaw",)))
    assert gateway_checks(broken, OpenClawView()) == [Check(
        "warn", "openclaw gateway", "The openclaw command (/nonexistent/openclaw) was not found.",
        "openclaw gateway status")]


def test_plugin_checks_name_the_models_or_what_is_missing(settings: Settings, tmp_path: Path,
                                                          monkeypatch) -> None:
    assert plugin_checks(Runner(settings), OpenClawMemory(), 5.0) == [
        Check("ok", "openclaw kimi plugin", "installed and enabled"),
        Check("ok", "openclaw kimi models", "kimi/kimi-for-coding")]
    monkeypatch.setenv("FAKE_OPENCLAW_NO_KIMI_PLUGIN", "1")
    (missing,) = plugin_checks(Runner(settings), OpenClawMemory(kimi_plugin=True), 5.0)
    assert missing == Check(
        "fail", "openclaw kimi plugin",
        "OpenClaw's Kimi provider plugin is not installed, so OpenClaw cannot use Kimi (and each "
        "openclaw call spends seconds trying to install it)", PLUGIN_FIX)
    shell = Runner(shell_openclaw(settings, tmp_path, """
[ "$1" = plugins ] && { echo '{"plugins": [{"providerIds": ["kimi"]}]}'; exit 0; }
[ -n "$MODELS" ] && { echo "$MODELS"; exit 0; }
echo 'models exploded' >&2; exit 1
"""))
    assert plugin_checks(shell, OpenClawMemory(), 5.0)[1] == Check(
        "fail", "openclaw kimi models",
        "openclaw models list --all --provider kimi failed: models exploded", PLUGIN_FIX)
    shell.env["MODELS"] = json.dumps({"models": [{"key": "a"}, "b", {"key": "c"}, {"key": "d"},
                                                 {"key": "e"}]})
    assert plugin_checks(shell, OpenClawMemory(), 5.0)[1] == Check("ok", "openclaw kimi models",
                                                                   "a, c, d")
    shell.env["MODELS"] = json.dumps({"models": None})
    assert plugin_checks(shell, OpenClawMemory(), 5.0)[1] == Check(
        "fail", "openclaw kimi models", "OpenClaw lists no Kimi model", "openclaw plugins enable kimi")
    broken = Runner(settings.with_overrides(openclaw_command=("/nonexistent/openclaw",)))
    assert plugin_checks(broken, OpenClawMemory(), 5.0) == [Check(
        "fail", "openclaw kimi plugin", "The openclaw command (/nonexistent/openclaw) was not found.",
        "run `openclaw doctor`")]


def test_cli_doctor_walks_from_the_command_to_the_gateway(settings: Settings) -> None:
    now = time.time()
    token = Token(ACCESS, now + 900)
    target = CliTarget(settings, OpenClawMemory(call_seconds=0.0))
    target.sync(token, now)
    checks = target.doctor_checks(lambda: token, OpenClawView(), now)
    assert [(c.level, c.name) for c in checks] == [
        ("ok", "openclaw command"), ("ok", "openclaw sync"), ("ok", "openclaw kimi plugin"),
        ("ok", "openclaw kimi models"), ("ok", "openclaw profile"), ("ok", "openclaw profiles"),
        ("warn", "openclaw gateway")]
    assert checks[1].detail == f"OpenClaw CLI ({settings.openclaw_command[0]}), profile kimi:oauth"
    assert checks[4].detail == "in_sync: kimi:oauth holds the current token"
    other = Token("eyJ-another-token-entirely-000", now + 900)
    stale = target.doctor_checks(lambda: other, OpenClawView(), now)
    assert stale[-1] == Check("fail", "openclaw profile",
                              "stale: OpenClaw holds an older Kimi token.", "kimi-tray renew")

    def unreadable() -> Token:
        raise OpenClawError("no login")

    assert target.doctor_checks(unreadable, OpenClawView(), now)[-1] == Check(
        "fail", "openclaw profile", "no login", "run `kimi-tray renew`")
    assert target.watched_files() == [] and target.restart_gateway()[0] is True
    assert math.isclose(target.memory.call_seconds or 0.0, target.memory.call_seconds or 0.0)


def reporting(settings: Settings, tmp_path: Path, report: object) -> CliTarget:
    """A CLI target whose `openclaw models status --json` prints `report`."""
    (tmp_path / "report.json").write_text(json.dumps(report))
    return CliTarget(shell_openclaw(settings, tmp_path, f"cat {tmp_path / 'report.json'}\n"))


def test_odd_status_reports_read_as_missing_or_stale(settings: Settings, tmp_path: Path) -> None:
    now = 1_800_000_000.0
    token = Token(ACCESS, now + 900)
    ours = {"profileId": "kimi:oauth", "provider": "kimi", "type": "token"}
    for report in ({"auth": []}, {"auth": {"oauth": None}}, {"auth": {"oauth": {"profiles": None}}},
                   {"auth": {"oauth": {"profiles": ["kimi:oauth", {**ours, "provider": "openai"}]}}}):
        assert reporting(settings, tmp_path, report).inspect(token, now).state == "missing", report
    for providers in (None, [{"provider": "kimi"}], [{"profiles": {"labels": None}}],
                      [{"profiles": {"labels": [7, f"kimi:oauth2=token:{MASK}",
                                                f"kimi=token:{MASK}"]}}]):
        report = {"auth": {"providers": providers, "oauth": {"profiles": [ours]}}}
        view = reporting(settings, tmp_path, report).inspect(token, now)
        assert view.detail == "OpenClaw holds an older Kimi token.", providers
    for label in (f"kimi:oauth=token:{MASK}", f"kimi:oauth={MASK}", f"kimi:oauth=oauth:{MASK}"):
        report = {"auth": {"providers": [{"profiles": {"labels": [label]}}],
                           "oauth": {"profiles": [{**ours, "expiresAt": "soon"}]}}}
        view = reporting(settings, tmp_path, report).inspect(token, now)
        assert (view.state, view.expires_at) == ("in_sync", None), label


def test_a_status_without_a_store_path_is_an_error(settings: Settings, tmp_path: Path) -> None:
    for report in ({"auth": None}, {"auth": {"storePath": None}}, {}):
        target = reporting(settings, tmp_path, report)
        with pytest.raises(OpenClawError, match="did not say where it keeps credentials"):
            Detector(target.runner, OpenClawMemory()).generation()


def test_cli_doctor_fails_without_the_command_and_reads_the_last_hand_off(settings: Settings,
                                                                         tmp_path: Path,
                                                                         monkeypatch) -> None:
    missing = CliTarget(settings.with_overrides(openclaw_command=(str(tmp_path / "none"),)))
    first = missing.doctor_checks(lambda: Token(ACCESS, 1e10), OpenClawView(), 1.0)[0]
    assert (first.level, first.name) == ("fail", "openclaw command")
    monkeypatch.setenv("FAKE_OPENCLAW_GATEWAY_RUNNING", "1")
    now = time.time()
    token = Token(ACCESS, now + 900)
    target = CliTarget(settings, OpenClawMemory(call_seconds=0.0))
    target.sync(token, now)
    last = OpenClawView(detail="x; gateway restart failed: y")
    assert target.doctor_checks(lambda: token, last, now)[-1].level == "fail"
    assert target.holding_checks(lambda: token, last, now)[-1].level == "fail"


def test_a_gateway_status_without_an_rpc_object_is_not_running(settings: Settings,
                                                              tmp_path: Path) -> None:
    runner = Runner(shell_openclaw(settings, tmp_path, 'echo "$STATUS"\n'))
    for status in ("{}", '{"rpc": true}', '{"rpc": "ok"}', '{"rpc": {"ok": false}}'):
        runner.env["STATUS"] = status
        assert gateway_checks(runner, OpenClawView())[0].detail == (
            "not running; it reads the current token when it starts"), status


def test_doctor_says_when_openclaw_has_no_profile_of_ours(settings: Settings) -> None:
    checks = CliTarget(settings).doctor_checks(lambda: Token(ACCESS, 1e10), OpenClawView(), 1.0)
    assert checks[-1] == Check("fail", "openclaw profile",
                               "missing: OpenClaw has no kimi:oauth profile.", "kimi-tray renew")
