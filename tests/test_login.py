"""The device login against the loopback server: every ending, the files it writes, the terminal."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

import pexpect
import pytest

from kimi_tray.core.clock import FakeClock
from kimi_tray.core.config import KIMI_CLIENT_ID
from kimi_tray.core.errors import DeviceFlowError
from kimi_tray.engine.login import LoginCancelled, LoginProgress, device_login
from kimi_tray.kimi.oauth import OAuthClient
from kimi_tray.stores.credentials import CredentialSource
from tests.conftest import ROOT, kimi_file, read_json, run_cli, write_credentials
from tests.support.oauth_server import FakeKimiOAuth


def login(server: FakeKimiOAuth, home: Path, **kw):
    source = CredentialSource(kimi_file(home), home / ".kimi", "kimi-cli")
    clock = kw.pop("clock", FakeClock())
    return device_login(OAuthClient(server.url, KIMI_CLIENT_ID), source, 5, clock=clock, **kw)


def test_pending_slow_down_then_success_writes_the_kimi_file(oauth_server, home) -> None:
    oauth_server.device_script = ["pending", "slow_down", "pending", "ok"]
    intervals: list[float] = []
    codes: list[LoginProgress] = []
    creds = login(oauth_server, home, on_code=codes.append,
                  on_tick=lambda p: intervals.append(p.interval))
    assert codes[0].authorization.user_code.startswith("CODE-")
    assert intervals[0] == pytest.approx(0.05) and intervals[-1] == pytest.approx(5.05), \
        "slow_down adds 5 s to the interval"
    assert len(next(iter(oauth_server.devices.values())).polls) == 4
    data = read_json(kimi_file(home))
    assert data["refresh_token"] == creds.refresh_token and creds.refresh_token in oauth_server.valid_refresh
    assert stat.S_IMODE(kimi_file(home).stat().st_mode) == 0o600
    assert stat.S_IMODE(kimi_file(home).parent.stat().st_mode) == 0o700


# The whole sentence: the generic "rejected the login (HTTP 400, expired_token)" also says
# "expired", so a bare word would pass even if the error were not recognised.
@pytest.mark.parametrize(("step", "message"), [
    ("expired", "^The login code expired before it was approved; start again.$"),
    ("denied", "^The login was denied in the browser.$"),
])
def test_expired_and_denied_stop_with_a_clear_message(oauth_server, home, step, message) -> None:
    oauth_server.device_script = ["pending", step]
    with pytest.raises(DeviceFlowError, match=message):
        login(oauth_server, home)
    assert not kimi_file(home).exists()


def test_code_lifetime_runs_out(oauth_server, home) -> None:
    oauth_server.device_script = ["pending"]
    clock = FakeClock()
    with pytest.raises(DeviceFlowError, match="^The login code expired before it was approved"):
        login(oauth_server, home, clock=clock, on_tick=lambda p: clock.advance(60))
    assert not kimi_file(home).exists()


def test_cancel_leaves_nothing(oauth_server, home) -> None:
    oauth_server.device_script = ["pending"]
    cancel = threading.Event()
    with pytest.raises(LoginCancelled):
        login(oauth_server, home, cancel=cancel, on_tick=lambda p: cancel.set())
    assert not kimi_file(home).exists()
    assert not list(home.rglob("*.tmp.*")), "no half-written temp file is left behind"


def test_login_keeps_unknown_fields_and_a_second_process_reads_it_under_the_lock(oauth_server, home):
    write_credentials(kimi_file(home), {"access_token": "", "refresh_token": ""}, 0, custom="kept")
    creds = login(oauth_server, home)
    reader = subprocess.run([sys.executable, "-c", (
        "import fcntl, json, os, sys\n"
        "path = sys.argv[1]\n"
        "fd = os.open(os.path.join(os.path.dirname(path), 'kimi-code.lock'), os.O_RDWR)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "data = json.load(open(path))\n"
        "print(json.dumps({'custom': data['custom'], 'exp': data['expires_at'],"
        " 'same': data['refresh_token'] == sys.argv[2]}))\n"), str(kimi_file(home)), creds.refresh_token],
        capture_output=True, text=True, timeout=30)
    result = json.loads(reader.stdout)
    assert result["custom"] == "kept" and result["same"] is True and result["exp"] == creds.expires_at


def test_jwt_refresh_token_expiry_shows_in_status(env, home) -> None:
    exp = time.time() + 2 * 86400
    server = FakeKimiOAuth(refresh_exp=exp).start()
    try:
        write_credentials(kimi_file(home), server.issue(), time.time() + 880)
    finally:
        server.stop()
    report = json.loads(run_cli(["status", "--json"], env).stdout)
    assert report["refresh_token_expires_at"] == pytest.approx(exp)
    text = run_cli(["status"], env).stdout
    assert "Forced login:" in text and "unknown" not in text.split("Forced login:")[1]


def test_opaque_refresh_token_expiry_is_unknown(env, home, oauth_server) -> None:
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 880)
    assert "Forced login:  unknown (the refresh token does not say" in run_cli(["status"], env).stdout


def spawn_login(env: dict[str, str]) -> pexpect.spawn:
    return pexpect.spawn(sys.executable, ["-m", "kimi_tray", "login", "--no-browser"], env=env,
                         cwd=str(ROOT), encoding="utf-8", timeout=20, dimensions=(24, 120))


def test_terminal_login_shows_url_code_countdown_and_succeeds(oauth_server, env, home) -> None:
    oauth_server.device_script = ["pending"]
    child = spawn_login(env)
    child.expect(r"(http://127\.0\.0\.1:\d+/device\?user_code=CODE-\d+)")
    child.expect(r"code:\s+(CODE-\d+)")
    child.expect(r"code expires in\s+\d+ min")
    (login_state,) = oauth_server.devices.values()
    login_state.script = deque(["ok"])
    child.expect(r"Logged in: saved to (\S+); token valid for 1[45] min; OpenClaw (in sync|\w+)")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert read_json(kimi_file(home))["refresh_token"] in oauth_server.valid_refresh
    device_id = (home / ".kimi" / "device_id").read_text().strip()
    assert len(device_id) == 32
    assert oauth_server.requests[0]["headers"]["X-Msh-Device-Id"] == device_id
    assert stat.S_IMODE((home / ".kimi").stat().st_mode) == 0o700


def test_terminal_login_ctrl_c_cancels_cleanly(oauth_server, env, home) -> None:
    oauth_server.device_script = ["pending"]
    child = spawn_login(env)
    child.expect(r"code expires in")
    child.sendintr()
    child.expect(r"cancelled")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    assert "Traceback" not in (child.before or "")
    assert not kimi_file(home).exists()
