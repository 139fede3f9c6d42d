"""The daemon never holds the HTTP stack: httpx, and the ssl, OpenSSL and certifi it brings
(about 15 MiB), load only in the short-lived child that sends each request. These run the real
`kimi-tray daemon` under `python -X importtime`, whose report on stderr names every module the
process imported (the children are not run under it)."""

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
# Each costs the daemon and the tray more than a MiB for something they rarely or never need:
# OpenSSL's libcrypto behind hashlib (one SHA-256 of a few bytes), the browser module (opened
# by hand), the TOML parser (only when there is a config file).
RARELY_NEEDED = {"hashlib", "_hashlib", "secrets", "webbrowser", "tomllib"}
MUTMUT_BRINGS = {"hashlib", "_hashlib", "tomllib"}


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


def test_daemon_renews_without_ever_importing_it(
        env: dict[str, str], home: Path, oauth_server: FakeKimiOAuth, tmp_path: Path) -> None:
    path = write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 60)  # due at start
    before = json.loads(path.read_text())["access_token"]
    modules = run_daemon(env, tmp_path / "daemon.err",
                         also=lambda: json.loads(path.read_text())["access_token"] != before)
    assert oauth_server.successful_refreshes == 1
    assert "kimi_tray.engine.renewal" in modules  # the report was read
    assert modules & HTTP_STACK == set()
    # Under mutation testing the mutated code's trampolines bring hashlib and mutmut's TOML config.
    assert modules & RARELY_NEEDED - (MUTMUT_BRINGS if "mutmut" in sys.modules else set()) == set()


def test_a_one_shot_renew_does_import_it(env: dict[str, str], home: Path, oauth_server: FakeKimiOAuth,
                                        tmp_path: Path) -> None:
    """`kimi-tray renew` sends its one request itself (a child would only cost time), and the
    same check sees the import (so the tests above can fail)."""
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 60)
    config = Path(env["XDG_CONFIG_HOME"]) / "kimi-tray" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("http_timeout = 10\n")  # a file to read: the TOML parser comes too
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "kimi_tray", "renew"], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert oauth_server.successful_refreshes == 1
    assert {"httpx", "ssl", "certifi", "tomllib"} <= imported_modules(done.stderr)
