"""The fault matrix: every server fault and every odd local file ends in its documented state,
never with a traceback, writes nothing on a failed refresh, and recovers when the fault goes."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import fill_up, immutable, kimi_file, read_json, small_tmpfs, write_credentials
from tests.reliability.conftest import FIGURES, Witness, run
from tests.support.oauth_server import FakeKimiOAuth

TRANSIENT = ["500", "502", "429:1", "429-bare", "slow:30", "reset", "drop", "refused", "malformed",
             "missing"]
KEEPS_TOKENS = ["expires:1e999", "expires:NaN", "expires:-1", "expires:1e300", 'expires:"soon"']


def quick(env: dict[str, str], tmp_path: Path, **values: object) -> None:
    path = tmp_path / "config.toml"
    values = {"renew_give_up_after": 2.5, **values}
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    env["KIMI_TRAY_CONFIG"] = str(path)


def clean(result: subprocess.CompletedProcess[str]) -> bool:
    return "Traceback" not in result.stdout + result.stderr


def strict(path: Path) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(name)

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.mark.parametrize("fault", TRANSIENT)
def test_a_transient_fault_writes_nothing_and_recovers(env, home, oauth_server: FakeKimiOAuth, tmp_path,
                                                       witness: Witness, fault: str) -> None:
    cred = write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 600, foreign=1)
    before = cred.read_bytes()
    quick(env, tmp_path)
    if fault == "refused":
        env["KIMI_CODE_OAUTH_HOST"] = "http://127.0.0.1:9"  # discard port: nothing listens
    else:
        oauth_server.fail_always(fault)
    failed = run(["renew"], env)
    witness.output(f"renew under {fault}", failed)
    assert failed.returncode == 1 and clean(failed) and "Gave up" in failed.stderr, failed.stderr
    assert cred.read_bytes() == before, "nothing written on a failed refresh"
    assert read_json(cred)["refresh_token"] in oauth_server.valid_refresh
    oauth_server.clear_faults()
    env["KIMI_CODE_OAUTH_HOST"] = oauth_server.url
    recovered = run(["renew"], env)
    witness.output("renew after recovery", recovered)
    assert recovered.returncode == 0, recovered.stderr
    assert strict(cred)["foreign"] == 1
    FIGURES["fault matrix: server faults"] += 1


@pytest.mark.parametrize("fault", KEEPS_TOKENS)
def test_an_impossible_expiry_keeps_the_rotated_tokens(env, home, oauth_server, witness, fault) -> None:
    cred = write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 600)
    oauth_server.fail_next(fault)
    result = run(["renew"], env)
    witness.output(f"renew under {fault}", result)
    assert result.returncode == 0 and clean(result), result.stderr
    data = strict(cred)
    assert data["refresh_token"] in oauth_server.valid_refresh
    assert 0 < data["expires_at"] - time.time() <= 300
    FIGURES["fault matrix: server faults"] += 1


@pytest.mark.parametrize("fault", ["401", "invalid_grant"])
def test_a_dead_token_says_login_needed_and_writes_nothing(env, home, oauth_server, witness, fault) -> None:
    tokens = oauth_server.issue()
    cred = write_credentials(kimi_file(home), tokens, time.time() + 600)
    before = cred.read_bytes()
    if fault == "401":
        oauth_server.fail_next("401")
    else:
        oauth_server.valid_refresh.discard(tokens["refresh_token"])
    result = run(["renew"], env)
    status = run(["status"], env)
    witness.output(f"renew under {fault}", result, status)
    assert result.returncode == 3 and "kimi-tray login" in result.stderr and clean(result)
    assert status.returncode == 3 and cred.read_bytes() == before
    if fault == "invalid_grant":  # recovery is a new login
        write_credentials(cred, oauth_server.issue(), time.time() + 600)
    again = run(["renew"], env)
    witness.output("renew after recovery", again)
    assert again.returncode == 0, again.stderr
    FIGURES["fault matrix: server faults"] += 1


def test_a_late_answer_after_rotation_is_kept_or_named(env, home, oauth_server, tmp_path,
                                                      witness) -> None:
    """Within renew's limit a late answer is waited for and saved (the rotated token is never
    sent again); after it, the next renew's rejection says an earlier attempt may have gone through."""
    cred = write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 600)
    quick(env, tmp_path, http_timeout=1, renew_give_up_after=10)
    oauth_server.fail_next("late:4")
    result = run(["renew"], env)
    witness.output("renew with a late answer", result)
    assert result.returncode == 0 and clean(result), result.stderr
    assert read_json(cred)["refresh_token"] in oauth_server.valid_refresh and oauth_server.reused == []
    quick(env, tmp_path, http_timeout=1, renew_give_up_after=3)
    oauth_server.fail_next("late:6")
    result = run(["renew"], env)
    assert result.returncode == 1 and clean(result), result.stderr
    result = run(["renew"], env)
    witness.output("renew after a late answer", result)
    assert result.returncode == 3 and "may have accepted it" in result.stderr and clean(result)
    write_credentials(cred, oauth_server.issue(), time.time() + 600)  # the documented way out
    assert run(["renew"], env).returncode == 0
    FIGURES["fault matrix: server faults"] += 1


# --------------------------------------------------------------- local faults
def _bad_files() -> dict[str, bytes]:
    return {
        "empty": b"",
        "truncated": b'{"access_token": "at-x", "refresh_tok',
        "binary": bytes(range(256)) * 4,
        "huge": b'{"pad": "' + b"x" * (2 * 1024 * 1024) + b'"}',
        "wrong types": b'{"access_token": 1, "refresh_token": ["x"], "expires_at": "soon"}',
        "not an object": b"[1, 2, 3]",
        "NaN expiry": b'{"access_token": "a", "refresh_token": "r", "expires_at": NaN}',
    }


@pytest.mark.parametrize("kind", list(_bad_files()))
def test_a_bad_credential_file_is_named_and_left_alone(env, home, oauth_server, witness, kind) -> None:
    cred = kimi_file(home)
    cred.parent.mkdir(parents=True, mode=0o700)
    cred.write_bytes(_bad_files()[kind])
    for command in (["renew"], ["status"]):
        result = run(command, env)
        witness.output(f"{command[0]} with a {kind} file", result)
        assert result.returncode == 1 and clean(result), result.stderr
        assert str(cred) in result.stdout + result.stderr
    assert cred.read_bytes() == _bad_files()[kind] and oauth_server.refresh_calls == 0
    FIGURES["fault matrix: local faults"] += 1


def test_local_filesystem_faults(env, home, oauth_server, tmp_path, witness) -> None:
    """Full disk, immutable file, read-only directory, symlink, directory, BOM: each in turn."""
    tokens = oauth_server.issue()
    cred = write_credentials(kimi_file(home), tokens, time.time() + 600)
    (cred.parent / "kimi-code.lock").touch()
    outcomes = []

    def renew(label: str) -> subprocess.CompletedProcess[str]:
        result = run(["renew"], env)
        witness.output(label, result)
        assert clean(result), result.stderr
        outcomes.append((label, result.returncode))
        return result

    with immutable(cred):
        assert renew("immutable file").returncode == 1
    with immutable(cred.parent):
        assert renew("read-only directory").returncode == 1
    calls = oauth_server.refresh_calls
    assert calls == 0, "nothing sent while the answer could not be saved"
    share = tmp_path / "share"
    with small_tmpfs(share):
        full = share / "credentials" / "kimi-code.json"
        write_credentials(full, oauth_server.issue(), time.time() + 600)
        fill_up(share)
        env_full = {**env, "KIMI_SHARE_DIR": str(share)}
        result = run(["renew"], env_full)
        witness.output("full disk", result)
        assert result.returncode == 1 and "No space left" in result.stderr
        assert oauth_server.refresh_calls == calls
        (share / "filler").unlink()
        assert run(["renew"], env_full).returncode == 0
    real = home / "dotfiles" / "kimi-code.json"
    real.parent.mkdir()
    cred.rename(real)
    cred.symlink_to(real)
    assert renew("symlink").returncode == 0 and cred.is_symlink()
    cred.unlink()
    real.rename(cred)
    cred.write_bytes(b"\xef\xbb\xbf" + cred.read_bytes())
    assert renew("BOM").returncode == 0
    assert cred.read_bytes().startswith(b"\xef\xbb\xbf")
    moved = cred.with_name("moved.json")
    cred.rename(moved)
    cred.mkdir()
    result = renew("directory")
    assert result.returncode == 1 and "is a directory" in result.stderr
    cred.rmdir()
    moved.rename(cred)
    assert renew("recovered").returncode == 0
    FIGURES["fault matrix: local faults"] += 6
