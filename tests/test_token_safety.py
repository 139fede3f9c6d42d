"""A rotated token is always saved, no refresh storms, only finite numbers, clear errors.

Each test here reproduces one way a login was lost or a command failed, with real processes,
real files and filesystems, and the loopback OAuth server.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kimi_tray.engine.scheduler import Engine
from tests.conftest import (
    SUPPORT,
    fill_up,
    immutable,
    kimi_file,
    read_json,
    run_cli,
    small_tmpfs,
    wait_for,
    write_credentials,
)
from tests.support.clock import FakeClock
from tests.support.oauth_server import FakeKimiOAuth, make_jwt


def config(env: dict[str, str], tmp_path: Path, **values: object) -> None:
    path = tmp_path / "config.toml"
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    env["KIMI_TRAY_CONFIG"] = str(path)


def strict_json(path: Path) -> dict:
    """Parse as the TypeScript CLI would: NaN and Infinity are not JSON."""
    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def login_alive(path: Path, server: FakeKimiOAuth) -> bool:
    return read_json(path)["refresh_token"] in server.valid_refresh


def no_traceback(result: subprocess.CompletedProcess[str]) -> bool:
    return "Traceback" not in result.stdout + result.stderr


def start_renew(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "kimi_tray", "renew"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


# --------------------------------------------------------------- a save that cannot fail later
def test_full_disk_sends_no_refresh_and_keeps_the_login(env, oauth_server, tmp_path) -> None:
    share = tmp_path / "share"
    with small_tmpfs(share):
        env["KIMI_SHARE_DIR"] = str(share)
        cred = share / "credentials" / "kimi-code.json"
        write_credentials(cred, oauth_server.issue(), time.time() + 60)
        (cred.parent / "kimi-code.lock").touch()
        fill_up(share)
        renew = run_cli(["renew"], env)
        assert renew.returncode == 1 and "No space left on device" in renew.stderr, renew.stderr
        assert "nothing is lost" in renew.stderr and no_traceback(renew)
        assert oauth_server.refresh_calls == 0 and login_alive(cred, oauth_server)
        (share / "filler").unlink()
        again = run_cli(["renew"], env)
        assert again.returncode == 0, again.stderr
        assert login_alive(cred, oauth_server)


def test_disk_filling_during_the_request_cannot_stop_the_save(env, oauth_server, tmp_path) -> None:
    """The proof reserved the space before the request: the answer still fits afterwards."""
    share = tmp_path / "share"
    with small_tmpfs(share):
        env["KIMI_SHARE_DIR"] = str(share)
        cred = share / "credentials" / "kimi-code.json"
        write_credentials(cred, oauth_server.issue(), time.time() + 60, foreign="kept")
        oauth_server.fail_next("late:1.0")
        proc = start_renew(env)
        assert wait_for(lambda: oauth_server.refresh_calls == 1, timeout=20)
        fill_up(share)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert login_alive(cred, oauth_server) and strict_json(cred)["foreign"] == "kept"


def test_immutable_credential_file_sends_no_refresh(env, home, oauth_server) -> None:
    cred = write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 60)
    (cred.parent / "kimi-code.lock").touch()
    with immutable(cred):
        renew = run_cli(["renew"], env)
        assert renew.returncode == 1 and "immutable" in renew.stderr, renew.stderr
        assert oauth_server.refresh_calls == 0 and no_traceback(renew)
    assert login_alive(cred, oauth_server)
    assert run_cli(["renew"], env).returncode == 0 and login_alive(cred, oauth_server)


def test_a_save_refused_after_the_answer_keeps_the_token_in_a_recovery_file(env, home,
                                                                             oauth_server) -> None:
    """The file turns immutable while the server answers: the new token survives, is shown in
    status, and is put in place by the next renew."""
    old = oauth_server.issue()
    cred = write_credentials(kimi_file(home), old, time.time() + 60)
    (cred.parent / "kimi-code.lock").touch()
    oauth_server.fail_next("late:1.0")
    proc = start_renew(env)
    assert wait_for(lambda: oauth_server.refresh_calls == 1, timeout=20)
    with immutable(cred):
        out, err = proc.communicate(timeout=30)
        recovery = home / ".local" / "state" / "kimi-tray" / "unsaved-token.json"
        assert proc.returncode == 1, err
        assert "not saved yet" in err and str(recovery) in err
        assert stat.S_IMODE(recovery.stat().st_mode) == 0o600
        kept = read_json(recovery)
        assert kept["refresh_token"] in oauth_server.valid_refresh
        status = run_cli(["status"], env)
        assert status.returncode == 1 and "new token not saved yet" in status.stdout
        for text in (out, err, status.stdout, status.stderr,
                     (home / ".local/state/kimi-tray/log/kimi-tray.log").read_text()):
            assert kept["refresh_token"] not in text and kept["access_token"] not in text
    renew = run_cli(["renew"], env)
    assert renew.returncode == 0, renew.stderr
    assert not recovery.exists() and login_alive(cred, oauth_server)
    assert oauth_server.reused == [], "the recovered token was used, not the dead one"
    assert oauth_server.successful_refreshes == 1, "a token saved from recovery is the renewal"


# --------------------------------------------------------------- cadence
@pytest.mark.parametrize("lifetime", [60, 300, 900])
def test_refreshes_per_token_lifetime_are_bounded(settings, home, lifetime: int) -> None:
    server = FakeKimiOAuth(lifetime=lifetime).start()
    try:
        clock = FakeClock()
        write_credentials(kimi_file(home), server.issue(), clock.now() + lifetime)
        engine = Engine(settings.with_overrides(oauth_host=server.url, openclaw_mode="off"),
                         clock=clock, rng=lambda: 0.5)
        end, steps, expired = clock.now() + 10 * lifetime, 0, 0
        while clock.now() < end and steps < 5000:
            delay = engine.step()
            expired += engine.status.seconds_left is not None and engine.status.seconds_left <= 0
            clock.advance(delay)
            steps += 1
        # refreshed near the middle: 2 per lifetime, never a storm, never expired
        print(f"{lifetime} s token: {server.successful_refreshes} refreshes in 10 lifetimes")
        assert 18 <= server.successful_refreshes <= 21, server.successful_refreshes
        assert expired == 0 and server.refresh_calls == server.successful_refreshes
        assert steps <= 10 * lifetime / settings.poll_interval + 25, "the loop sleeps between checks"
    finally:
        server.stop()


def test_a_server_granting_one_second_tokens_gets_at_most_one_refresh_per_10_s(settings, home) -> None:
    server = FakeKimiOAuth(lifetime=1).start()
    try:
        clock = FakeClock()
        write_credentials(kimi_file(home), server.issue(), clock.now() + 1)
        engine = Engine(settings.with_overrides(oauth_host=server.url, openclaw_mode="off"),
                         clock=clock, rng=lambda: 0.5)
        end, steps = clock.now() + 100, 0
        while clock.now() < end and steps < 2000:
            clock.advance(engine.step())
            steps += 1
        print(f"1 s token: {server.successful_refreshes} refreshes in 100 s")
        assert server.successful_refreshes <= 11
    finally:
        server.stop()


# --------------------------------------------------------------- numbers at the boundary
@pytest.mark.parametrize("raw", ["1e999", "NaN", "-Infinity", "-5", "0", "1e300", "900000000", '"900"'])
def test_an_impossible_expires_in_keeps_the_new_tokens_with_a_safe_expiry(env, home, oauth_server,
                                                                          raw: str) -> None:
    cred = write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 60, foreign=1)
    oauth_server.fail_next(f"expires:{raw}")
    renew = run_cli(["renew"], env)
    assert renew.returncode == 0, renew.stderr
    data = strict_json(cred)
    assert login_alive(cred, oauth_server) and data["foreign"] == 1
    assert 280 < data["expires_at"] - time.time() <= 300 and data["expires_in"] == 300
    log = (home / ".local/state/kimi-tray/log/kimi-tray.log").read_text()
    assert "cannot be right" in log


def test_a_jwt_access_token_gives_the_safe_expiry_itself() -> None:
    from kimi_tray.kimi.oauth import safe_lifetime

    now = 1_800_000_000.0
    access = make_jwt({"exp": now + 600})
    assert safe_lifetime(float("nan"), access, now)[0] == pytest.approx(600)
    assert safe_lifetime(900, access, now) == (900.0, "")
    lifetime, warning = safe_lifetime(float("inf"), "opaque", now)
    assert lifetime == 300 and "inf" in warning


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "1e300", "-5", "1800000000000"])
def test_an_impossible_expires_at_in_the_file_is_named_never_a_traceback(env, home, oauth_server,
                                                                          raw: str) -> None:
    tokens = oauth_server.issue()
    cred = kimi_file(home)
    cred.parent.mkdir(parents=True, mode=0o700)
    cred.write_text(f'{{"access_token": "{tokens["access_token"]}", "refresh_token": '
                    f'"{tokens["refresh_token"]}", "expires_at": {raw}, "expires_in": 900}}\n')
    for command in (["status"], ["status", "--json"], ["renew"]):
        result = run_cli(command, env)
        assert result.returncode == 1 and no_traceback(result), result.stderr
        assert str(cred) in result.stdout + result.stderr and "'expires_at'" in result.stdout + result.stderr
    assert oauth_server.refresh_calls == 0


# --------------------------------------------------------------- files of odd kinds
def test_a_symlinked_credential_file_stays_a_link(env, home, oauth_server) -> None:
    real = write_credentials(home / "dotfiles" / "kimi-code.json", oauth_server.issue(), time.time() + 60)
    link = kimi_file(home)
    link.parent.mkdir(parents=True, mode=0o700)
    link.symlink_to(real)
    renew = run_cli(["renew"], env)
    assert renew.returncode == 0, renew.stderr
    assert link.is_symlink() and login_alive(real, oauth_server)
    leftovers = [p.name for d in (real.parent, link.parent) for p in d.iterdir() if ".tmp." in p.name]
    assert leftovers == []


def test_wrong_typed_state_fields_are_ignored_and_rewritten(env, home, oauth_server) -> None:
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 900)
    state = home / ".local/state/kimi-tray/state.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"last_renewal": "yesterday", "dead_reason": 5,
                                 "openclaw": {"expires_at": "soon", "state": "in_sync"}}))
    status = run_cli(["status"], env)
    assert status.returncode == 0 and no_traceback(status), status.stderr
    assert "last_renewal" in status.stderr and "openclaw.expires_at" in status.stderr
    rewritten = read_json(state)
    assert rewritten["last_renewal"] is None and rewritten["dead_reason"] == ""
    assert rewritten["openclaw"]["state"] == "in_sync"
    assert "Ignored" not in run_cli(["status"], env).stderr, "warned once, then the file is clean"


def test_a_directory_where_the_credential_file_should_be(env, home) -> None:
    kimi_file(home).mkdir(parents=True)
    for command in (["renew"], ["status"]):
        result = run_cli(command, env)
        assert result.returncode == 1 and "is a directory" in result.stdout + result.stderr
        assert (result.stdout + result.stderr).count("kimi-tray login") <= 1 and no_traceback(result)


def test_a_config_path_that_is_a_directory_is_an_error(env, tmp_path) -> None:
    (tmp_path / "conf.d").mkdir()
    env["KIMI_TRAY_CONFIG"] = str(tmp_path / "conf.d")
    result = run_cli(["status"], env)
    assert result.returncode == 1 and "is a directory" in result.stderr


def test_a_byte_order_mark_is_accepted_and_kept(env, home, oauth_server) -> None:
    cred = write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 60)
    cred.write_bytes(b"\xef\xbb\xbf" + cred.read_bytes())
    assert run_cli(["status"], env).returncode == 1  # ageing is 0; 60 s left is "expiring"
    renew = run_cli(["renew"], env)
    assert renew.returncode == 0, renew.stderr
    raw = cred.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert json.loads(raw.decode("utf-8-sig"))["refresh_token"] in oauth_server.valid_refresh


# --------------------------------------------------------------- time limits
def test_renew_against_a_hanging_server_ends_within_its_limit(env, home, oauth_server, tmp_path) -> None:
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 600)
    config(env, tmp_path, renew_give_up_after=14, http_timeout=8)
    oauth_server.fail_always("slow:30")
    started = time.monotonic()
    renew = run_cli(["renew"], env)
    elapsed = time.monotonic() - started
    assert renew.returncode == 1 and "Gave up" in renew.stderr and no_traceback(renew)
    assert elapsed < 14 + 1.5, f"took {elapsed:.1f} s: the attempt in flight ran past the limit"
    assert renew.stdout == ""


def test_renew_progress_is_quiet_when_all_goes_well(env, home, oauth_server) -> None:
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 600)
    oauth_server.fail_next("500")
    renew = run_cli(["renew"], env)
    assert renew.returncode == 0
    assert renew.stderr.startswith("kimi-tray: attempt 1 of ") and renew.stderr.count("\n") == 1
    assert renew.stdout.count("\n") == 1 and renew.stdout.startswith("Renewed")
    quiet = run_cli(["renew"], env)
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_a_late_answer_after_rotation_is_kept_not_answered_with_a_resend(env, home, oauth_server,
                                                                      tmp_path) -> None:
    """The server rotates but answers after our timeout: the retry waits for that answer instead
    of sending the dead token again, and saves the token it brings."""
    cred = write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 600)
    config(env, tmp_path, http_timeout=1)
    oauth_server.fail_next("late:4")
    renew = run_cli(["renew"], env)
    assert renew.returncode == 0, renew.stderr
    assert login_alive(cred, oauth_server) and oauth_server.reused == []
    assert oauth_server.refresh_calls == 1, "the rotated token was sent again"


def test_the_kimi_cli_waiting_for_the_lock_does_not_give_up_on_us(env, home, oauth_server,
                                                                  tmp_path) -> None:
    """The Python Kimi CLI tries the flock 5 times about a second apart, then goes without it."""
    cred = write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 600)
    config(env, tmp_path, renew_give_up_after=10)
    oauth_server.fail_always("slow:30")
    proc = start_renew(env)
    try:
        assert wait_for(lambda: oauth_server.refresh_calls >= 1 or len(oauth_server.requests) >= 1,
                        timeout=20)
        waiter = subprocess.run([sys.executable, str(SUPPORT / "kimi_cli_waiter.py"),
                                 str(cred.with_name("kimi-code.lock")), "5", "1"],
                                capture_output=True, text=True, timeout=30)
        assert waiter.stdout.strip() == "got", "kimi-tray held the Kimi lock too long"
    finally:
        proc.kill()
        proc.communicate()


# --------------------------------------------------------------- hygiene
def test_stale_temp_files_are_swept_and_directories_are_private(env, home, oauth_server) -> None:
    cred = write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 60)
    old = cred.with_name("kimi-code.json.tmp.4242.deadbeef")
    fresh = cred.with_name("kimi-code.json.tmp.4243.cafef00d")
    for path in (old, fresh):
        path.write_text('{"refresh_token": "left by a killed writer"}')
    os.utime(old, (time.time() - 120, time.time() - 120))
    state_dir = home / ".local/state/kimi-tray"
    (state_dir / "log").mkdir(parents=True)
    state_dir.chmod(0o755)
    (state_dir / "log").chmod(0o755)
    assert run_cli(["renew"], env).returncode == 0
    assert not old.exists() and fresh.exists()
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((state_dir / "log").stat().st_mode) == 0o700
    assert stat.S_IMODE((state_dir / "log" / "kimi-tray.log").stat().st_mode) == 0o600
    assert stat.S_IMODE((state_dir / "state.json").stat().st_mode) == 0o600


def test_the_engine_keeps_retrying_an_unsaved_token_until_the_disk_takes_it(settings, home,
                                                                             oauth_server) -> None:
    """The tray and the daemon: the file turns immutable while the server answers; the loop
    shows it, retries with backoff, and saves the kept token once the file is writable again."""
    clock = FakeClock(start=time.time())
    cred = write_credentials(kimi_file(home), oauth_server.issue(), clock.now() + 100)
    engine = Engine(settings.with_overrides(openclaw_mode="off"), clock=clock, rng=lambda: 0.5)
    stack = contextlib.ExitStack()
    oauth_server.on_rotate = lambda: stack.enter_context(immutable(cred))
    with stack:
        engine.step()
        oauth_server.on_rotate = None
        assert engine.status.health.value == "error"
        assert engine.status.message.startswith("new token not saved yet")
        assert engine.renewal.recovery_path.exists() and oauth_server.successful_refreshes == 1
        clock.advance(engine.step())
        assert engine.renewal.recovery_path.exists(), "still immutable: still kept"
    clock.advance(engine.step())
    engine.step()
    assert not engine.renewal.recovery_path.exists() and login_alive(cred, oauth_server)
    assert engine.status.health.value == "fresh" and oauth_server.successful_refreshes == 1


def test_an_unsaved_token_with_no_credential_file_left_still_schedules(settings, home,
                                                                      oauth_server) -> None:
    """A token is kept in recovery, then the credential file is gone and its directory refuses
    the new one: the loop keeps its schedule (it used to read the missing file's expiry and
    fail every step), shows the kept token, and saves it once the directory takes it."""
    clock = FakeClock(start=time.time())
    cred = write_credentials(kimi_file(home), oauth_server.issue(), clock.now() + 100)
    engine = Engine(settings.with_overrides(openclaw_mode="off"), clock=clock, rng=lambda: 0.5)
    stack = contextlib.ExitStack()
    oauth_server.on_rotate = lambda: stack.enter_context(immutable(cred))
    with stack:
        engine.step()
        oauth_server.on_rotate = None
    assert engine.renewal.recovery_path.exists() and engine.status.message.startswith("new token not saved")
    cred.unlink()
    with immutable(cred.parent):
        delay = engine.step()
        assert 0 < delay <= settings.poll_interval
        assert engine.status.health.value == "error"
        assert engine.status.message.startswith("new token not saved yet")
        clock.advance(delay)
        assert 0 < engine.step() <= settings.poll_interval
        assert engine.renewal.recovery_path.exists()
    clock.advance(settings.poll_interval)
    engine.step()
    assert not engine.renewal.recovery_path.exists() and login_alive(cred, oauth_server)
    assert oauth_server.successful_refreshes == 1


def test_a_kill_during_a_refresh_is_named_when_the_token_is_then_rejected(env, home, oauth_server) -> None:
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 600)
    oauth_server.fail_next("late:5")
    proc = start_renew(env)
    assert wait_for(lambda: oauth_server.successful_refreshes == 1, timeout=20)
    proc.kill()
    proc.communicate()
    renew = run_cli(["renew"], env)
    assert renew.returncode == 3 and "may have accepted it" in renew.stderr, renew.stderr
    assert renew.stderr.count("kimi-tray login") == 1


def test_a_trickling_answer_neither_holds_the_lock_nor_loses_the_rotated_token(env, home, oauth_server,
                                                                              tmp_path) -> None:
    """The server rotates, then sends its answer a few bytes every half second for 8 s: no single
    read times out. The Kimi CLI waiting for the flock must still get it within its ~5 s, and the
    new token, arriving after we stopped waiting under the lock, must still be saved."""
    cred = write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 600, foreign="kept")
    config(env, tmp_path, renew_give_up_after=30, http_timeout=15)
    oauth_server.fail_next("trickle:8")
    proc = start_renew(env)
    try:
        assert wait_for(lambda: oauth_server.successful_refreshes == 1, timeout=20)
        waiter = subprocess.run([sys.executable, str(SUPPORT / "kimi_cli_waiter.py"),
                                 str(cred.with_name("kimi-code.lock")), "5", "1"],
                                capture_output=True, text=True, timeout=30)
        assert waiter.stdout.strip() == "got", "kimi-tray held the Kimi lock while the answer trickled"
        out, err = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert login_alive(cred, oauth_server), "the rotated token that arrived late was dropped"
    assert strict_json(cred)["foreign"] == "kept" and oauth_server.successful_refreshes == 1
    for text in (out, err):
        assert all(token not in text for token in oauth_server.issued)


HOLD_FLOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_a_rejection_outside_the_lock_rereads_within_renews_limit(env, home, oauth_server,
                                                                  tmp_path) -> None:
    """The answer (a rejection) comes after we left the Kimi lock, and another program has taken
    the lock meanwhile: the re-read under it must not wait past renew's own limit."""
    cred = write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 600)
    oauth_server.revoke_all()
    config(env, tmp_path, renew_give_up_after=6, http_timeout=4, locked_http_timeout=1,
           lock_timeout=20)
    oauth_server.fail_next("slow:2")
    started = time.monotonic()
    proc = start_renew(env)
    holder = None
    try:
        assert wait_for(lambda: len(oauth_server.requests) >= 1, timeout=20)
        holder = subprocess.Popen([sys.executable, "-c", HOLD_FLOCK, str(cred.with_name("kimi-code.lock")),
                                   "30"], stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        _, err = proc.communicate(timeout=40)
        elapsed = time.monotonic() - started
    finally:
        for p in (proc, holder):
            if p is not None and p.poll() is None:
                p.kill()
                p.communicate()
    assert proc.returncode != 0 and "Traceback" not in err, err
    assert elapsed < 6 + 1.5, f"took {elapsed:.1f} s: the lock wait ran past renew's limit"


def test_a_recovery_path_that_is_a_directory_never_claims_to_hold_the_token(settings, home,
                                                                            oauth_server) -> None:
    """The recovery file cannot be written (a directory is in its place) while the credential
    file refuses the new token: the error must say the token is in memory only, and saving it
    later must not stumble over that directory."""
    clock = FakeClock(start=time.time())
    cred = write_credentials(kimi_file(home), oauth_server.issue(), clock.now() + 100)
    engine = Engine(settings.with_overrides(openclaw_mode="off"), clock=clock, rng=lambda: 0.5)
    engine.renewal.recovery_path.mkdir(parents=True)
    stack = contextlib.ExitStack()
    oauth_server.on_rotate = lambda: stack.enter_context(immutable(cred))
    with stack:
        with pytest.raises(Exception) as raised:
            engine.renewal.refresh_once(force=True)
        oauth_server.on_rotate = None
        assert "kept in memory only" in str(raised.value), str(raised.value)
    creds, renewed = engine.renewal.refresh_once(force=False)
    assert renewed and login_alive(cred, oauth_server) and oauth_server.successful_refreshes == 1


def test_a_recovery_file_readable_by_others_is_made_private(env, home, oauth_server) -> None:
    old = oauth_server.issue()
    write_credentials(kimi_file(home), old, time.time() + 600)
    new = oauth_server.issue()
    recovery = home / ".local/state/kimi-tray/unsaved-token.json"
    recovery.parent.mkdir(parents=True, mode=0o700)
    from kimi_tray.stores.state import fingerprint

    recovery.write_text(json.dumps({**new, "expires_at": time.time() + 900, "expires_in": 900.0,
                                    "replaces": fingerprint(old["refresh_token"]), "reason": "disk full"}))
    recovery.chmod(0o644)
    status = run_cli(["status"], env)
    assert no_traceback(status) and "new token not saved yet" in status.stdout
    assert stat.S_IMODE(recovery.stat().st_mode) == 0o600, "a token file readable by other users"
    assert "changed it to 600" in status.stderr, status.stderr


def test_a_tombstone_written_meanwhile_does_not_make_us_drop_the_kept_token(settings, home,
                                                                            oauth_server) -> None:
    """Our new token waits in recovery (the file was immutable); the TypeScript Kimi CLI, whose
    refresh with the old token was rejected, writes its tombstone. Our token is the only live
    one: it must be put in place, not dropped as "older"."""
    clock = FakeClock(start=time.time())
    cred = write_credentials(kimi_file(home), oauth_server.issue(), clock.now() + 100)
    engine = Engine(settings.with_overrides(openclaw_mode="off"), clock=clock, rng=lambda: 0.5)
    stack = contextlib.ExitStack()
    oauth_server.on_rotate = lambda: stack.enter_context(immutable(cred))
    with stack, pytest.raises(Exception, match="not saved yet"):
        engine.renewal.refresh_once(force=True)
    oauth_server.on_rotate = None
    cred.write_text(json.dumps({"access_token": "", "refresh_token": "", "expires_at": 0,
                                "scope": "", "token_type": "Bearer", "expires_in": 0}, indent=2))
    creds, renewed = engine.renewal.refresh_once(force=False)
    assert renewed and login_alive(cred, oauth_server), "the only live token was dropped"


def test_a_login_made_while_we_wait_outside_the_lock_is_not_overwritten(env, home, oauth_server,
                                                                       tmp_path) -> None:
    """We left the Kimi lock to wait for a slow answer; meanwhile the user logs in again with the
    Kimi CLI (under the lock). Our answer, from the old login, must not replace the new login."""
    import threading

    from kimi_tray.stores.fileio import FileLock

    cred = write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 600)
    config(env, tmp_path, locked_http_timeout=1, http_timeout=10, renew_give_up_after=20)
    fresh = oauth_server.issue()
    written = threading.Event()

    def log_in_again() -> None:
        with FileLock(cred.with_name("kimi-code.lock"), timeout=10):
            write_credentials(cred, fresh, time.time() + 900)
        written.set()

    oauth_server.on_rotate = lambda: threading.Thread(target=log_in_again, daemon=True).start()
    oauth_server.fail_next("late:3")
    renew = run_cli(["renew"], env)
    assert written.is_set() and "Traceback" not in renew.stderr
    kept = read_json(cred)["refresh_token"] == fresh["refresh_token"]
    assert kept, "the new login was overwritten"


def test_a_clock_set_back_does_not_delay_the_refresh(settings, home, oauth_server) -> None:
    """The wall clock goes back an hour (a bad NTP step, a user fixing the time): the token still
    lasts its real 900 s, so it must be refreshed by the time half of that has really passed."""
    clock = FakeClock(start=time.time())
    write_credentials(kimi_file(home), oauth_server.issue(), clock.now() + 900, expires_in=900)
    engine = Engine(settings.with_overrides(openclaw_mode="off"), clock=clock, rng=lambda: 0.5)
    clock.advance(engine.step())
    assert oauth_server.successful_refreshes == 0
    clock.jump_wall(-3600)
    started = clock.monotonic()
    while clock.monotonic() - started < 900 and oauth_server.successful_refreshes == 0:
        clock.advance(engine.step())
    assert oauth_server.successful_refreshes == 1, "no refresh in the token's real lifetime"
    assert clock.monotonic() - started <= 450 + 30, "refreshed later than half its real lifetime"
    for _ in range(20):  # then the usual rhythm: no storm while the wall clock lags
        clock.advance(engine.step())
    assert oauth_server.successful_refreshes <= 3


def test_the_loop_never_blocks_on_an_answer_it_stopped_waiting_for(settings, home, oauth_server) -> None:
    """The tray's and daemon's loop gives up on a slow answer, goes on (its thread stays free for
    status and quit), and saves the rotated token as soon as the late answer wakes it."""
    clock = FakeClock(start=time.time())
    cred = write_credentials(kimi_file(home), oauth_server.issue(), clock.now() + 100)
    engine = Engine(settings.with_overrides(openclaw_mode="off", http_timeout=1.0,
                                             locked_http_timeout=0.5), clock=clock, rng=lambda: 0.5)
    oauth_server.fail_next("late:3")
    engine.step()
    assert engine.status.failures == 1 and oauth_server.successful_refreshes == 1
    started = time.monotonic()
    with pytest.raises(Exception, match="still waiting"):
        engine.renewal.refresh_once(force=True)
    assert time.monotonic() - started < 0.5, "the loop waited for the abandoned request"
    assert wait_for(lambda: engine.renewal.recovery_path.exists(), timeout=10), "the late answer was not kept"
    engine.step()
    assert not engine.renewal.recovery_path.exists() and login_alive(cred, oauth_server)
    assert oauth_server.refresh_calls == 1 and engine.status.health.value == "fresh"
