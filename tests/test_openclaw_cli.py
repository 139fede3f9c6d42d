"""`renew`, `status` and `doctor` tell the truth about OpenClaw (the openclaw stand-in)."""

from __future__ import annotations

import json
import time

from kimi_tray.core.health import Health, Status
from kimi_tray.stores.openclaw import PLUGIN_FIX, legacy_profiles_path
from tests.conftest import calls, kimi_file, read_json, run_cli, write_credentials


def test_renew_exits_1_when_the_openclaw_sync_fails(env, home, oauth_server) -> None:
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 100)
    path = legacy_profiles_path(home / ".openclaw", "main")
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    renew = run_cli(["renew"], dict(env, KIMI_TRAY_OPENCLAW="file"))
    assert renew.returncode == 1
    assert renew.stdout.startswith("Renewed: ")
    assert "the Kimi token was saved, but OpenClaw was not updated: " in renew.stderr
    assert "auth-profiles.json is not valid JSON" in renew.stderr, renew.stderr
    assert path.read_text() == "{not json"
    assert read_json(kimi_file(home))["refresh_token"] != "", "the Kimi side is saved"
    status = run_cli(["status", "--json"], dict(env, KIMI_TRAY_OPENCLAW="file"))
    assert json.loads(status.stdout)["openclaw"] == "error"


def test_missing_kimi_plugin_renew_pastes_once_and_says_what_is_wrong(env, home, oauth_server):
    tokens = oauth_server.issue()
    write_credentials(kimi_file(home), tokens, time.time() + 100)
    env = dict(env, FAKE_OPENCLAW_NO_KIMI_PLUGIN="1", FAKE_OPENCLAW_PASTE_DELAY="0.5")
    renew = run_cli(["renew"], env)
    assert renew.returncode == 1, renew.stdout + renew.stderr
    assert ("the Kimi token was saved and OpenClaw holds it, but OpenClaw cannot use it: OpenClaw's "
            "Kimi provider plugin is not installed") in renew.stderr
    argv = [c["argv"] for c in calls(env)]
    assert sum("paste-token" in a for a in argv) == 1, "a cold renew pastes once"
    assert argv.count(["plugins", "list", "--json"]) == 1
    status = json.loads(run_cli(["status", "--json"], env).stdout)
    assert status["openclaw"] == "error" and "plugin" in status["summary"]
    doctor = run_cli(["doctor"], env)
    assert doctor.returncode == 1
    assert "fail  openclaw kimi plugin: OpenClaw's Kimi provider plugin is not installed" in doctor.stdout
    assert f"-> fix: {PLUGIN_FIX}" in doctor.stdout
    for text in (renew.stdout, renew.stderr, doctor.stdout):
        assert tokens["access_token"] not in text


def test_doctor_fails_on_a_running_gateway_that_did_not_take_the_token(env, home, oauth_server):
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 100)
    path = legacy_profiles_path(home / ".openclaw", "main")
    path.parent.mkdir(parents=True)
    path.write_text('{"version": 1, "profiles": {}}\n')
    env = dict(env, KIMI_TRAY_OPENCLAW="file", FAKE_OPENCLAW_FAIL="restart")
    assert run_cli(["renew"], env).returncode == 0, "the file holds the token"
    doctor = run_cli(["doctor"], dict(env, FAKE_OPENCLAW_GATEWAY_RUNNING="1"))
    assert ("fail  openclaw gateway: running, but it did not take the current token after the last "
            "renewal  -> fix: openclaw gateway restart") in doctor.stdout
    doctor = run_cli(["doctor"], env)
    assert "warn  openclaw gateway: not running" in doctor.stdout


def test_the_tray_line_shows_why_openclaw_is_in_error() -> None:
    status = Status(Health.FRESH, time.time(), expires_at=time.time() + 600, openclaw="error",
                    openclaw_detail="OpenClaw's Kimi provider plugin is not installed.")
    assert status.summary().endswith(
        "OpenClaw sync failed (OpenClaw's Kimi provider plugin is not installed)")


def test_engine_does_not_paste_again_for_a_problem_pasting_cannot_fix(settings, home, oauth_server,
                                                                      env, monkeypatch) -> None:
    """A missing Kimi plugin is reported once per token, not retried every 30 s."""
    from kimi_tray.engine.scheduler import Engine
    from tests.support.clock import FakeClock

    monkeypatch.setenv("FAKE_OPENCLAW_LOG", env["FAKE_OPENCLAW_LOG"])
    monkeypatch.setenv("FAKE_OPENCLAW_NO_KIMI_PLUGIN", "1")
    clock = FakeClock(start=time.time())
    write_credentials(kimi_file(home), oauth_server.issue(), clock.now() + 900)
    engine = Engine(settings, clock=clock, rng=lambda: 0.5)
    for _ in range(5):
        clock.advance(engine.step())
    assert engine.status.openclaw == "error" and "plugin" in engine.status.openclaw_detail
    assert sum("paste-token" in c["argv"] for c in calls(env)) == 1


def test_renew_with_openclaws_lock_held_by_a_live_process_writes_nothing(env, home, oauth_server,
                                                                         tmp_path) -> None:
    import subprocess
    import sys

    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 100)
    path = legacy_profiles_path(home / ".openclaw", "main")
    path.parent.mkdir(parents=True)
    path.write_text('{"version": 1, "profiles": {}}\n')
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = path.with_name("auth-profiles.json.lock")
        lock.write_text(json.dumps({"pid": holder.pid, "createdAt": "2026-01-01T00:00:00.000Z"}))
        config = tmp_path / "config.toml"
        config.write_text('openclaw_mode = "file"\nlock_timeout = 1\n')
        renew = run_cli(["renew"], dict(env, KIMI_TRAY_CONFIG=str(config)))
    finally:
        holder.kill()
        holder.wait()
    assert renew.returncode == 1
    assert (f"the Kimi token was saved, but OpenClaw was not updated: OpenClaw's lock {lock} is held "
            f"by process {holder.pid}, which is still running") in renew.stderr
    assert path.read_text() == '{"version": 1, "profiles": {}}\n' and lock.exists()


def test_renew_line_ends_with_one_full_stop_after_the_gateway_restart(env, home, oauth_server):
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 100)
    path = legacy_profiles_path(home / ".openclaw", "main")
    path.parent.mkdir(parents=True)
    path.write_text('{"version": 1, "profiles": {}}\n')
    renew = run_cli(["renew"], dict(env, KIMI_TRAY_OPENCLAW="file"))
    assert renew.returncode == 0, renew.stderr
    assert renew.stdout.rstrip("\n").endswith("; OpenClaw gateway restarted."), renew.stdout
    assert not renew.stdout.rstrip("\n").endswith(".."), renew.stdout


def test_doctor_names_the_profile_holding_our_token_beside_a_users_own_key(env, home, oauth_server):
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 100)
    path = legacy_profiles_path(home / ".openclaw", "main")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"version": 1, "profiles": {"kimi-coding:default": {
        "type": "api_key", "provider": "kimi-coding", "key": "sk-users-own-key"}}}))
    env = dict(env, KIMI_TRAY_OPENCLAW="file")
    assert run_cli(["renew"], env).returncode == 0
    doctor = run_cli(["doctor"], env)
    assert "ok    openclaw profile: in_sync: kimi:oauth holds the current token" in doctor.stdout, \
        doctor.stdout
