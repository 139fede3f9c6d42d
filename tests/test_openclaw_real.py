"""The real `openclaw` 2026.9.6 CLI from npm (credentials in SQLite) reads back what we wrote."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from kimi_tray.stores.openclaw import PLUGIN_FIX, mask_matches
from tests.conftest import (
    kimi_file,
    openclaw_dir,
    openclaw_env,
    read_json,
    require,
    run_cli,
    write_credentials,
)

pytestmark = pytest.mark.openclaw


@pytest.fixture
def real_env(env: dict[str, str], home: Path) -> dict[str, str]:
    directory = openclaw_dir()
    require(directory is not None, "the openclaw CLI from npm (scripts/install-openclaw)")
    assert directory is not None
    return openclaw_env(env, directory, home / ".openclaw")


def openclaw(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["openclaw", *args], env=env, input=stdin, capture_output=True, text=True,
                          timeout=180)


def status_report(env: dict[str, str]) -> dict:
    status = openclaw(env, "models", "status", "--json")
    return json.loads(status.stdout[status.stdout.find("{"):])


def test_real_openclaw_holds_our_access_token_and_doctor_says_what_it_lacks(real_env, home,
                                                                           oauth_server) -> None:
    """2026.9.6 as npm ships it: no Kimi provider plugin (it is not bundled), and a Kimi profile
    of another provider id left over from older days. Every `openclaw` call here is seconds."""
    stale = "eyJold-token-of-another-profile-0000000000"
    leftover = openclaw(real_env, "models", "auth", "paste-token", "--provider", "kimi-coding",
                        "--profile-id", "kimi-coding:manual", stdin=stale)
    assert leftover.returncode == 0, leftover.stderr
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 100)
    renew = run_cli(["renew"], real_env, timeout=300)
    new = read_json(kimi_file(home))
    assert renew.returncode == 1, renew.stdout + renew.stderr
    assert ("the Kimi token was saved and OpenClaw holds it, but OpenClaw cannot use it: OpenClaw's "
            "Kimi provider plugin is not installed") in renew.stderr

    report = status_report(real_env)
    assert report["auth"]["storePath"].endswith(".sqlite")
    profiles = {p["profileId"]: p for p in report["auth"]["oauth"]["profiles"]}
    ours = profiles["kimi:oauth"]
    assert ours["type"] == "token" and ours["provider"] == "kimi"
    assert ours["expiresAt"] / 1000 <= new["expires_at"], "OpenClaw never trusts it for longer"
    assert ours["expiresAt"] / 1000 > time.time() + 600
    labels = [label for p in report["auth"]["providers"] for label in p["profiles"]["labels"]]
    masks = {label.split("=", 1)[0]: label.split(":", 1)[-1].split("token:", 1)[-1]
             for label in labels}
    assert mask_matches(masks["kimi:oauth"], new["access_token"])
    store = home / ".openclaw" / "state" / "openclaw.sqlite"
    blobs = b"".join(p.read_bytes() for p in store.parent.glob("openclaw.sqlite*"))
    assert new["refresh_token"].encode() not in blobs, "OpenClaw never sees the refresh token"
    assert new["access_token"].encode() in blobs

    doctor = run_cli(["doctor"], real_env, timeout=300)
    assert doctor.returncode == 1, doctor.stdout
    lines = doctor.stdout.splitlines()
    assert "ok    openclaw generation: OpenClaw 2026.9.6" in doctor.stdout
    plugin = next(line for line in lines if line.startswith("fail  openclaw kimi plugin:"))
    assert plugin.endswith(f"-> fix: {PLUGIN_FIX}")
    assert "ok    openclaw profile: in_sync" in doctor.stdout
    leftover_line = next(line for line in lines if "kimi-coding:manual" in line)
    assert leftover_line.startswith("fail  openclaw profiles: OpenClaw's Kimi profile "
                                    "kimi-coding:manual (provider kimi-coding) holds an older token")
    fix = leftover_line.split("-> fix: ", 1)[1]
    assert fix == "openclaw models auth logout kimi-coding:manual --yes"
    assert openclaw(real_env, *fix.split()[1:]).returncode == 0, "the printed fix works"
    remaining = [p["profileId"] for p in status_report(real_env)["auth"]["oauth"]["profiles"]]
    assert "kimi-coding:manual" not in remaining and "kimi:oauth" in remaining
    for text in (renew.stdout, renew.stderr, doctor.stdout, doctor.stderr):
        assert new["access_token"] not in text and new["refresh_token"] not in text
        assert stale not in text
