"""The daemon starts without the HTTP stack: httpx, and the ssl, OpenSSL and certifi it brings
(about 4 MiB of the daemon's memory), come with its first request. A fresh 900 s token means
none for minutes. These run the real `kimi-tray daemon` under `python -X importtime`, whose
report on stderr names every module the process imported."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import ROOT, kimi_file, wait_for, write_credentials
from tests.support.oauth_server import FakeKimiOAuth

HTTP_STACK = {"httpx", "httpcore", "h11", "ssl", "_ssl", "certifi"}


def imported_modules(report: str) -> set[str]:
    """Module names from `-X importtime` lines: `import time: self | cumulative | name`."""
    names = set()
    for line in report.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":  # the header line
                names.add(name)
    return names


def run_daemon(env: dict[str, str], err: Path, also: Callable[[], bool] = lambda: True) -> set[str]:
    """Start the daemon, wait until it has started (and `also` holds), stop it; what it imported."""
    proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "kimi_tray", "daemon"],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=open(err, "w"))  # noqa: SIM115
    try:
        assert wait_for(lambda: "daemon started" in err.read_text(), timeout=30), err.read_text()[-2000:]
        time.sleep(1)  # the engine's first step and the event sources have run by now
        assert wait_for(also, timeout=10)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    return imported_modules(err.read_text())


def test_daemon_with_a_fresh_token_never_imports_the_http_stack(
        env: dict[str, str], home: Path, oauth_server: FakeKimiOAuth, tmp_path: Path) -> None:
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 900)
    modules = run_daemon(env, tmp_path / "daemon.err")
    assert {"kimi_tray.engine.scheduler", "kimi_tray.engine.events"} <= modules  # the report was read
    assert oauth_server.successful_refreshes == 0
    assert modules & HTTP_STACK == set()


def test_daemon_imports_it_with_its_first_request(
        env: dict[str, str], home: Path, oauth_server: FakeKimiOAuth, tmp_path: Path) -> None:
    """The same check sees the import when a renewal is due at start (so the test above can fail)."""
    path = write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 60)
    before = json.loads(path.read_text())["access_token"]
    modules = run_daemon(env, tmp_path / "daemon.err",
                         also=lambda: json.loads(path.read_text())["access_token"] != before)
    assert oauth_server.successful_refreshes == 1
    assert {"httpx", "ssl", "certifi"} <= modules
