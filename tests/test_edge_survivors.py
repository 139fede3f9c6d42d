"""Small edges the other tests left open: the URL and timeouts a request really carries (also
across the child process's JSON), the exact words of usage errors, the log's rotation at its
limit and its mode from the first instant, the config file's encoding, the instance lock read
while another reader looks, and the GLib event sources chosen when the caller runs GLib."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kimi_tray.core.config import KIMI_CLIENT_ID
from kimi_tray.core.errors import TransientError
from kimi_tray.core.logs import PrivateRotatingFileHandler
from kimi_tray.kimi.exchange import ExchangeFailed, Reply, Request
from kimi_tray.kimi.oauth import TOKEN_PATH, OAuthClient, Timeouts
from kimi_tray.kimi.usage_client import USAGES_PATH, UsageClient
from kimi_tray.platform.resume import GLibLogindListener, LogindListener, resume_listener
from kimi_tray.platform.single_instance import LOCK_NAME, InstanceLock, running_instance
from kimi_tray.platform.watch import FileWatcher
from tests.conftest import ROOT
from tests.support.exchange import ScriptedExchange
from tests.support.mutation import child_env

NOW = 1_800_000_000.0
GOOD = b'{"access_token": "at-new", "refresh_token": "rt-new", "expires_in": 900}'


# ----------------------------------------------------------------- requests
@pytest.mark.parametrize("host, base", [
    ("https://auth.example.com/", "https://auth.example.com"),
    ("https://gateway.example.com/kimi-X/", "https://gateway.example.com/kimi-X"),
])
def test_the_oauth_host_loses_only_its_trailing_slash(host: str, base: str) -> None:
    """A real server may not fold `//api/...` into `/api/...` as Python's test server does."""
    exchange = ScriptedExchange(Reply(200, GOOD))
    OAuthClient(host, KIMI_CLIENT_ID, exchange=exchange, now=lambda: NOW).refresh("rt-old")
    assert [request.url for request in exchange.sent] == [base + TOKEN_PATH]


@pytest.mark.parametrize("url, base", [
    ("https://api.example.com/coding/v1/", "https://api.example.com/coding/v1"),
    ("https://gateway.example.com/kimi-X/", "https://gateway.example.com/kimi-X"),
])
def test_the_usage_base_loses_only_its_trailing_slash(url: str, base: str) -> None:
    exchange = ScriptedExchange(Reply(200, b"[]"))
    with pytest.raises(TransientError):
        UsageClient(url, exchange=exchange).fetch("at", NOW)
    assert [request.url for request in exchange.sent] == [base + USAGES_PATH]


def test_a_short_connect_timeout_under_the_lock_reaches_the_request() -> None:
    exchange = ScriptedExchange(Reply(200, GOOD))
    client = OAuthClient("https://auth.example.com", KIMI_CLIENT_ID, timeout=30, exchange=exchange,
                         now=lambda: NOW)
    client.refresh("rt-old", timeout=Timeouts(connect=0.5, read=4.0))
    (request,) = exchange.sent
    assert (request.connect_timeout, request.read_timeout) == (0.5, 4.0)


def test_no_connection_in_time_is_said_and_surely_not_sent() -> None:
    exchange = ScriptedExchange(ExchangeFailed("connect_timeout"))
    client = OAuthClient("https://auth.example.com", KIMI_CLIENT_ID, exchange=exchange)
    with pytest.raises(TransientError) as caught:
        client.refresh("rt-old")
    assert str(caught.value) == ("The Kimi OAuth server at https://auth.example.com did not accept a "
                                 "connection in time.")
    assert not caught.value.maybe_sent


@pytest.mark.parametrize("request_", [
    Request("GET", "https://api.example.com/v1/usages", {"Authorization": "Bearer at"},
            connect_timeout=3.0, read_timeout=4.0, whole_timeout=5.0, max_bytes=1000),
    Request("POST", "https://auth.example.com/api/oauth/token", {"X-A": "b"}, {"grant_type": "x"},
            connect_timeout=0.5, read_timeout=9.0),
])
def test_a_request_crosses_to_the_child_process_unchanged(request_: Request) -> None:
    """The child process rebuilds the request from its JSON: a GET has no form, and the short
    connect timeout used under the Kimi lock must survive the trip."""
    assert Request.from_json(request_.to_json()) == request_


# ----------------------------------------------------------------- usage errors (shown in status)
def test_a_huge_usage_reply_is_said_in_plain_words() -> None:
    client = UsageClient("https://api.example.com/v1",
                         exchange=ScriptedExchange(ExchangeFailed("broken", "ReplyTooLarge")))
    with pytest.raises(TransientError) as caught:
        client.fetch("at", NOW)
    assert str(caught.value) == "the usage server sent a reply far too large to be usage"


@pytest.mark.parametrize("body, words", [
    (b"[]", "The Kimi usage reply is not a JSON object"),
    (b'{"usage": null}', "The Kimi usage reply holds no quota window we can read"),
])
def test_a_reply_without_usage_says_what_is_wrong(body: bytes, words: str) -> None:
    client = UsageClient("https://api.example.com/v1", exchange=ScriptedExchange(Reply(200, body)))
    with pytest.raises(TransientError) as caught:
        client.fetch("at", NOW)
    assert str(caught.value) == words


# ----------------------------------------------------------------- the log file
@pytest.fixture
def handler(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[PrivateRotatingFileHandler]:
    made = PrivateRotatingFileHandler(tmp_path / "k.log", max_bytes=request.param[0],
                                      backups=request.param[1])
    made.setFormatter(logging.Formatter("%(message)s"))
    yield made
    made.close()


def emit(handler: PrivateRotatingFileHandler, message: str) -> None:
    handler.emit(logging.LogRecord("t", logging.INFO, __file__, 1, message, None, None))


@pytest.mark.parametrize("handler", [(19, 3)], indirect=True)
def test_a_line_that_would_pass_the_limit_by_its_newline_rotates_first(
        handler: PrivateRotatingFileHandler, tmp_path: Path) -> None:
    emit(handler, "a" * 9)  # 10 bytes with its newline
    emit(handler, "b" * 9)  # 20 bytes would pass 19
    assert (tmp_path / "k.log").read_text() == "b" * 9 + "\n"
    assert (tmp_path / "k.log.1").read_text() == "a" * 9 + "\n"


@pytest.mark.parametrize("handler", [(15, 0)], indirect=True)
def test_without_backups_the_log_starts_over_in_place(handler: PrivateRotatingFileHandler,
                                                      tmp_path: Path) -> None:
    emit(handler, "first line")
    emit(handler, "second one")
    assert (tmp_path / "k.log").read_text() == "second one\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.log"]


@pytest.mark.parametrize("handler", [(15, 1)], indirect=True)
def test_one_backup_keeps_the_previous_log(handler: PrivateRotatingFileHandler, tmp_path: Path) -> None:
    emit(handler, "first line")
    emit(handler, "second one")
    emit(handler, "third line")
    assert (tmp_path / "k.log").read_text() == "third line\n"
    assert (tmp_path / "k.log.1").read_text() == "second one\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.log", "k.log.1"]


@pytest.mark.skipif(os.name == "nt", reason="POSIX modes")
def test_the_log_is_private_from_the_instant_it_exists(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader who opens the file before its chmod keeps reading it after: so it must be made
    0600, not made open and tightened after (here under a umask that tightens nothing)."""
    path = tmp_path / "k.log"
    modes: list[int] = []
    real_chmod = os.chmod

    def chmod(target: str, mode: int) -> None:  # a spy: the real chmod still runs
        if os.fspath(target) == str(path):
            modes.append(stat.S_IMODE(os.stat(target).st_mode))
        real_chmod(target, mode)

    monkeypatch.setattr(os, "chmod", chmod)
    old_umask = os.umask(0)
    try:
        made = PrivateRotatingFileHandler(path, max_bytes=1000, backups=1)
    finally:
        os.umask(old_umask)
    made.close()
    assert modes == [0o600]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# ----------------------------------------------------------------- the config file
def test_the_config_file_is_utf8_whatever_the_locale_says(tmp_path: Path) -> None:
    """Windows' locale is cp1252 and a C locale is ASCII: the file is UTF-8 all the same. Run in
    a child with the C locale as it is (Python would otherwise switch itself to UTF-8 there)."""
    config = tmp_path / "config.toml"
    config.write_text('log_dir = "/var/tmp/journ\u00e9es"\n', encoding="utf-8")
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "HOME": str(tmp_path),
           "KIMI_TRAY_CONFIG": str(config), "LC_ALL": "C", "PYTHONUTF8": "0",
           "PYTHONCOERCECLOCALE": "0", **child_env(ROOT)}
    code = ("import locale, os; from kimi_tray.core.config import load_settings; "
            "print(locale.getpreferredencoding(False)); print(ascii(str(load_settings(os.environ).log_dir)))")
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    encoding, log_dir = result.stdout.split()
    assert encoding != "UTF-8"  # the child really reads with the C locale's encoding by default
    assert log_dir == ascii("/var/tmp/journ\u00e9es")


# ----------------------------------------------------------------- one instance
@pytest.mark.skipif(os.name == "nt", reason="flock: Windows locks one byte, never shared")
def test_another_status_reading_at_the_same_moment_is_not_a_running_instance(tmp_path: Path) -> None:
    """Two `status` (or `doctor`) checks at once: each takes the lock shared, so neither sees
    the other as a tray or daemon."""
    import fcntl

    lock = InstanceLock(tmp_path)
    lock.acquire()
    lock.release()  # a record left by an instance that has ended
    other = os.open(tmp_path / LOCK_NAME, os.O_RDONLY)
    try:
        fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)
        assert running_instance(tmp_path) is None
    finally:
        os.close(other)


# ----------------------------------------------------------------- GLib event sources
def test_on_linux_a_glib_caller_gets_the_glib_resume_listener() -> None:
    def woke() -> None:
        pass

    assert type(resume_listener(woke, platform="linux", glib=True)) is GLibLogindListener
    assert type(resume_listener(woke, platform="linux")) is LogindListener


def test_a_glib_file_watcher_starts_no_thread_but_its_own(tmp_path: Path) -> None:
    """Under GLib the file monitor is delivered by the caller's loop: no watchdog thread."""
    before = set(threading.enumerate())
    watcher = FileWatcher([tmp_path / "f.json"], lambda _path: None, glib=True,
                          fallback_interval=3600).start()
    try:
        assert watcher.events_active
        started = set(threading.enumerate()) - before
        assert "kimi-file-watch" in {t.name for t in started}
        assert [t for t in started if type(t).__module__.startswith("watchdog")] == []
    finally:
        watcher.stop()
