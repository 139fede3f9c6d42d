"""Races: Kimi-CLI-style refreshers (flock and mkdir locks) against kimi-tray, and two kimi-tray
processes at once. A rotated refresh token must never be sent again (the server counts reuses)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kimi_tray.core.config import Settings
from kimi_tray.engine.scheduler import Engine
from tests.conftest import ROOT, SUPPORT, kimi_file, read_json, wait_for, write_credentials
from tests.reliability.conftest import FIGURES, run, scaled
from tests.support.oauth_server import FakeKimiOAuth

ROUNDS = 100
PROCESS_ROUNDS = 20


@pytest.mark.parametrize("lock", ["flock", "mkdir"])
def test_kimi_cli_style_refreshers_never_make_us_reuse_a_token(settings: Settings, home: Path,
                                                               oauth_server: FakeKimiOAuth, witness,
                                                               lock: str) -> None:
    cred = kimi_file(home) if lock == "flock" else home / ".kimi-code" / "credentials" / "kimi-code.json"
    write_credentials(cred, oauth_server.issue(), time.time() + 600, foreign="kept")
    engine = Engine(settings.with_overrides(openclaw_mode="off"))
    assert engine.renewal.source.path == cred
    def standin() -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, str(SUPPORT / "kimi_cli_standin.py"), str(cred), lock,
                                 "0.02", oauth_server.url], stdout=subprocess.PIPE, text=True)

    for round_ in range(scaled(ROUNDS)):
        calls = oauth_server.refresh_calls
        if round_ % 2 == 0:  # it holds the lock and refreshes; we wait, then refresh its token
            other = standin()
            assert other.stdout.readline().strip() == "locked"
            engine.renewal.refresh_once(force=True)
        else:  # we hold the lock (a slow answer); it waits, then refreshes ours
            oauth_server.fail_next("late:0.1")
            ours = threading.Thread(target=engine.renewal.refresh_once, kwargs={"force": True})
            ours.start()
            assert wait_for(lambda: oauth_server.refresh_calls > calls, timeout=10)  # noqa: B023
            other = standin()
            ours.join(30)
        out, _ = other.communicate(timeout=60)
        assert other.returncode == 0 and "released" in out
        data = read_json(cred)
        assert data["refresh_token"] in oauth_server.valid_refresh, "the newest token is on disk"
    assert oauth_server.reused == [], f"{len(oauth_server.reused)} rotated tokens were sent again"
    assert oauth_server.successful_refreshes == 2 * scaled(ROUNDS)
    FIGURES[f"races with a Kimi-CLI-style refresher ({lock} lock): rounds"] += scaled(ROUNDS)
    FIGURES["races: rotated tokens reused"] += len(oauth_server.reused)


def test_two_kimi_tray_processes_at_once(env, home, oauth_server: FakeKimiOAuth, witness) -> None:
    cred = write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 600, foreign="kept")
    for _ in range(scaled(PROCESS_ROUNDS)):
        procs = [subprocess.Popen([sys.executable, "-m", "kimi_tray", "renew"], env=env, cwd=str(ROOT),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            witness.output("renew", out + err)
            assert proc.returncode == 0, err
        data = read_json(cred)
        assert data["refresh_token"] in oauth_server.valid_refresh and data["foreign"] == "kept"
    witness.output("status", run(["status"], env))
    assert oauth_server.reused == []
    FIGURES["races: two kimi-tray processes at once: rounds"] += scaled(PROCESS_ROUNDS)
    FIGURES["races: rotated tokens reused"] += len(oauth_server.reused)
