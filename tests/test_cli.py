"""The commands as a user runs them: real subprocesses, a temp HOME, the loopback OAuth server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, calls, kimi_file, read_json, run_cli, wait_for, write_credentials
from tests.support.oauth_server import FakeKimiOAuth


def all_output(*results: subprocess.CompletedProcess[str]) -> str:
    return "".join(r.stdout + r.stderr for r in results)


def assert_no_secret(text: str, *tokens: dict) -> None:
    for token in tokens:
        for key in ("access_token", "refresh_token"):
            assert token[key] not in text


def quick_config(env: dict[str, str], tmp_path: Path, **values: object) -> None:
    lines = [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    env["KIMI_TRAY_CONFIG"] = str(path)


def test_renew_then_status(env, home, oauth_server: FakeKimiOAuth) -> None:
    tokens = oauth_server.issue()
    write_credentials(kimi_file(home), tokens, time.time() + 60)
    renew = run_cli(["renew"], env)
    assert renew.returncode == 0, renew.stderr
    assert renew.stdout.startswith("Renewed: 14 min left; OpenClaw in sync")
    status = run_cli(["status", "--json"], env)
    report = json.loads(status.stdout)
    assert status.returncode == 0
    assert report["health"] == "fresh" and 880 < report["seconds_left"] <= 900
    assert report["credentials_file"] == str(kimi_file(home))
    assert report["openclaw"] == "in_sync" and report["last_renewal"] > time.time() - 60
    assert abs(report["expires_at"] - read_json(kimi_file(home))["expires_at"]) < 0.01
    text = run_cli(["status"], env)
    assert "fresh" in text.stdout and str(kimi_file(home)) in text.stdout
    new = read_json(kimi_file(home))
    assert_no_secret(all_output(renew, status, text), tokens, new)
    assert_no_secret(Path(env["FAKE_OPENCLAW_LOG"]).read_text(), tokens, new)
    log_dir = home / ".local" / "state" / "kimi-tray" / "log"
    assert_no_secret((log_dir / "kimi-tray.log").read_text(), tokens, new)


def test_dead_refresh_token_exit_3_and_remembered(env, home, oauth_server) -> None:
    tokens = oauth_server.issue()
    write_credentials(kimi_file(home), tokens, time.time() + 60)
    before = kimi_file(home).read_bytes()
    oauth_server.revoke_all()
    renew = run_cli(["renew"], env)
    assert renew.returncode == 3 and "kimi-tray login" in renew.stderr
    assert kimi_file(home).read_bytes() == before
    status = run_cli(["status", "--json"], env)
    assert status.returncode == 3 and json.loads(status.stdout)["health"] == "needs_login"
    assert_no_secret(all_output(renew, status), tokens)


def test_no_credentials_is_login_needed(env) -> None:
    renew = run_cli(["renew"], env)
    status = run_cli(["status", "--json"], env)
    assert renew.returncode == 3 and "No Kimi credentials" in renew.stderr
    assert status.returncode == 3 and json.loads(status.stdout)["health"] == "needs_login"


def test_server_down_gives_up_with_exit_1(env, home, oauth_server, tmp_path) -> None:
    quick_config(env, tmp_path, renew_give_up_after=4)
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 600)
    oauth_server.fail_always("503")
    started = time.monotonic()
    renew = run_cli(["renew"], env)
    assert renew.returncode == 1 and "Gave up after" in renew.stderr
    assert time.monotonic() - started < 20
    assert "Traceback" not in renew.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "not valid JSON"), ('{"access_token": "x", "expires_at": 1}', "no 'refresh_token'")],
)
def test_bad_credential_file_is_one_clear_line(env, home, content, message) -> None:
    kimi_file(home).parent.mkdir(parents=True)
    kimi_file(home).write_text(content)
    renew = run_cli(["renew"], env)
    status = run_cli(["status", "--json"], env)
    assert renew.returncode == 1 and message in renew.stderr and "Traceback" not in renew.stderr
    assert len(renew.stderr.strip().splitlines()) == 1
    assert status.returncode == 1 and json.loads(status.stdout)["health"] == "error"
    assert kimi_file(home).read_text() == content


def test_expired_token_status_exit_1(env, home, oauth_server) -> None:
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() - 5)
    status = run_cli(["status", "--json"], env)
    assert status.returncode == 1 and json.loads(status.stdout)["health"] == "expired"


def test_http_oauth_host_refused(env, home, oauth_server) -> None:
    env["KIMI_CODE_OAUTH_HOST"] = "http://auth.example.com"
    result = run_cli(["renew"], env)
    assert result.returncode == 1 and "only https" in result.stderr


def test_bad_config_file_is_named(env, tmp_path) -> None:
    quick_config(env, tmp_path, openclaw_mode="sometimes")
    result = run_cli(["status"], env)
    assert result.returncode == 1 and "openclaw_mode" in result.stderr
    (tmp_path / "config.toml").write_text("poll_interval = [")
    result = run_cli(["status"], env)
    assert result.returncode == 1 and "config.toml" in result.stderr


def test_doctor_reports_a_bad_config_file_and_still_checks_the_rest(env, home, tmp_path) -> None:
    """doctor is where a user goes when something is wrong: a typo in the config is one failing
    line with its fix, not the end of the checks."""
    quick_config(env, tmp_path, poll_intervall=5)
    result = run_cli(["doctor"], env)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    config = [line for line in lines if line.startswith("fail  config:")]
    assert len(config) == 1 and "Unknown key 'poll_intervall'" in config[0] and "-> fix:" in config[0]
    assert any(line.startswith("fail  credentials:") for line in lines), result.stdout
    assert any(" renewer:" in line for line in lines), result.stdout


def test_uninstall_works_with_a_bad_config_file(env, home, tmp_path) -> None:
    """A broken config must not keep anyone from removing kimi-tray."""
    assert run_cli(["autostart", "on"], env).returncode == 0
    quick_config(env, tmp_path, poll_intervall=5)
    result = run_cli(["uninstall", "--yes", "--keep-openclaw-profile"], env, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "poll_intervall" in result.stderr
    assert not (home / ".config" / "autostart" / "kimi-tray.desktop").exists()


def test_help_and_readme_show_the_one_exit_code_table() -> None:
    from kimi_tray.core import exit_codes

    readme = (ROOT / "README.md").read_text()
    for command in ("renew", "status"):
        result = subprocess.run([sys.executable, "-m", "kimi_tray", command, "--help"],
                                capture_output=True, text=True, cwd=ROOT)
        assert exit_codes.help_text() in result.stdout
    for code, meaning in exit_codes.TABLE:
        assert f"| {code} | {meaning} |" in readme, f"README lacks exit code {code}"


def test_daemon_renews_stops_on_sigterm_and_is_single_instance(env, home, oauth_server, tmp_path):
    quick_config(env, tmp_path, poll_interval=0.5)
    tokens = oauth_server.issue()
    write_credentials(kimi_file(home), tokens, time.time() + 200)  # inside the refresh window
    daemon = subprocess.Popen([sys.executable, "-m", "kimi_tray", "daemon"], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: oauth_server.successful_refreshes == 1, timeout=20)
        assert wait_for(lambda: any("paste-token" in c["argv"] for c in calls(env)), timeout=20)
        second = run_cli(["daemon"], env, timeout=30)
        assert second.returncode == 1 and "already running" in second.stderr
        started = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=10)
        assert time.monotonic() - started < 5
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert daemon.returncode == 0
    assert "daemon stopped" in err
    new = read_json(kimi_file(home))
    assert new["refresh_token"] != tokens["refresh_token"]
    assert_no_secret(out + err, tokens, new)


def test_daemon_logs_login_needed_once_with_the_command(env, home, oauth_server, tmp_path) -> None:
    quick_config(env, tmp_path, poll_interval=0.2)
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 100)
    oauth_server.revoke_all()
    daemon = subprocess.Popen([sys.executable, "-m", "kimi_tray", "daemon"], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    daemon.send_signal(signal.SIGINT)
    _, err = daemon.communicate(timeout=10)
    assert err.count("Login needed") == 1 and "kimi-tray login" in err
    assert oauth_server.refresh_calls == 1, "a dead token is not retried every tick"


def test_doctor_reports_each_check(env, home, oauth_server) -> None:
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 900)
    assert run_cli(["renew"], env).returncode == 0  # so OpenClaw holds the current token
    kimi_file(home).chmod(0o644)
    result = run_cli(["doctor"], env)
    lines = result.stdout.splitlines()
    assert any(line.startswith("warn  permissions") and "chmod 600" in line for line in lines)
    assert any(line.startswith("ok    refresh token") for line in lines)
    assert any(line.startswith("ok    oauth host") for line in lines)
    assert any(line.startswith("ok    openclaw command") for line in lines)
    assert any(line.startswith("ok    log dir") for line in lines)
    # Nothing renews in this test: that is the one failing check, and it says how to fix it.
    assert [line for line in lines if line.startswith("fail")] == [
        line for line in lines if line.startswith("fail  renewer") and "kimi-tray daemon" in line]
    assert result.returncode == 1
    kimi_file(home).unlink()
    result = run_cli(["doctor"], env)
    assert result.returncode == 1 and "fail  credentials" in result.stdout


def test_read_only_credentials_directory_burns_no_token(env, home, oauth_server, tmp_path) -> None:
    """The refresh token rotates: refreshing without being able to save would lose the login."""
    tokens = oauth_server.issue()
    write_credentials(kimi_file(home), tokens, time.time() + 60)
    before = kimi_file(home).read_bytes()
    (kimi_file(home).parent / "kimi-code.lock").touch()
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(kimi_file(home).parent)], check=True)
    else:
        kimi_file(home).parent.chmod(0o500)
    try:
        renew = run_cli(["renew"], env)
    finally:
        subprocess.run(["chattr", "-i", str(kimi_file(home).parent)], check=False)
        kimi_file(home).parent.chmod(0o700)
    assert renew.returncode == 1 and "Could not write" in renew.stderr and "nothing is lost" in renew.stderr
    assert oauth_server.refresh_calls == 0
    assert kimi_file(home).read_bytes() == before
    assert tokens["refresh_token"] in oauth_server.valid_refresh


def test_doctor_and_status_see_the_running_daemon_and_a_broken_entry(env, home, oauth_server) -> None:
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 900)
    daemon = subprocess.Popen([sys.executable, "-m", "kimi_tray", "daemon"], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: "daemon runs" in run_cli(["status"], env).stdout, timeout=20)
        doctor = run_cli(["doctor"], env)
        assert f"ok    renewer: the daemon runs (pid {daemon.pid}, since" in doctor.stdout
        assert doctor.returncode == 0, doctor.stdout
        status = json.loads(run_cli(["status", "--json"], env).stdout)
        assert status["renewer_pid"] == daemon.pid
        # The entry the old code wrote: an interpreter that cannot import kimi_tray.
        entry = home / ".config" / "autostart" / "kimi-tray.desktop"
        entry.parent.mkdir(parents=True)
        entry.write_text("[Desktop Entry]\nType=Application\nName=kimi-tray\n"
                         f"Exec={home}/gone/python3.11 -m kimi_tray\n")
        doctor = run_cli(["doctor"], env)
        assert doctor.returncode == 1
        assert "fail  start on login:" in doctor.stdout and "kimi-tray autostart on" in doctor.stdout
        assert run_cli(["autostart", "on"], env).returncode == 0
        assert "ok    start on login:" in run_cli(["doctor"], env).stdout
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=15)
    assert "nothing is running" in run_cli(["status"], env).stdout


def test_doctor_fails_on_an_expired_token_and_a_dead_refresh_token(env, home, oauth_server) -> None:
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() - 120)
    doctor = run_cli(["doctor"], env)
    assert doctor.returncode == 1
    assert "fail  token: the access token expired 2 min ago  -> fix: run `kimi-tray renew`" in doctor.stdout
    assert f"ok    oauth reachable: {oauth_server.url}" in doctor.stdout

    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 100)
    oauth_server.revoke_all()
    assert run_cli(["renew"], env).returncode == 3
    doctor = run_cli(["doctor"], env)
    assert doctor.returncode == 1
    assert "fail  token: The Kimi refresh token was rejected  -> fix: log in again: run `kimi-tray login`" \
        in doctor.stdout, doctor.stdout
    status = run_cli(["status"], env)
    assert status.returncode == 3 and "Fix:           log in again: run `kimi-tray login`" in status.stdout


def test_doctor_says_when_the_oauth_host_cannot_be_reached(env, home, oauth_server) -> None:
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 900)
    oauth_server.stop()
    doctor = run_cli(["doctor"], env)
    assert doctor.returncode == 1
    assert "fail  oauth reachable: cannot connect to" in doctor.stdout


def test_a_closed_output_pipe_is_quiet(env, home, oauth_server) -> None:
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 900)
    command = f"{sys.executable} -m kimi_tray status | true; {sys.executable} -m kimi_tray doctor | true"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr
    assert result.stderr == ""
    assert result.returncode in (0, 141)  # 141 when the reader left before we wrote
