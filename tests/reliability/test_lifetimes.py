"""Short-lived tokens with real daemons: refreshed once near the middle, never in a storm.

A token of lifetime L is written with a little less than L/2 left, so one refresh is due at once
and the next only L/2 later. Each daemon runs for a few seconds (long enough for hundreds of
refreshes if the cadence were broken, as it was for 60 s and 300 s tokens); the FakeClock tests in
tests/test_token_safety.py count refreshes over ten whole lifetimes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, kimi_file, write_credentials
from tests.reliability.conftest import FIGURES, Witness
from tests.support.oauth_server import FakeKimiOAuth

RUN_FOR = 4.0


@pytest.mark.parametrize("lifetime", [60, 300, 900])
def test_a_daemon_refreshes_a_short_lived_token_once(env, home, tmp_path, witness: Witness,
                                                     lifetime: int) -> None:
    server = witness.server(FakeKimiOAuth(lifetime=lifetime).start())
    try:
        write_credentials(kimi_file(home), {**server.issue(), "expires_in": lifetime},
                          time.time() + lifetime / 2 - 2)
        daemon = subprocess.Popen([sys.executable, "-m", "kimi_tray", "daemon"], cwd=str(ROOT),
                                  env={**env, "KIMI_CODE_OAUTH_HOST": server.url},
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(RUN_FOR)
        os.kill(daemon.pid, signal.SIGTERM)
        out, err = daemon.communicate(timeout=20)
        witness.output("daemon", out, err)
        assert server.successful_refreshes == 1 and server.refresh_calls == 1, (
            f"{server.refresh_calls} refreshes in {RUN_FOR:.0f} s of a {lifetime} s token")
        FIGURES[f"short-lived tokens: {lifetime} s token, refreshes in {RUN_FOR:.0f} s of a daemon"] += (
            server.refresh_calls)
    finally:
        server.stop()
