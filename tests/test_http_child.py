"""The daemon's and the tray's HTTP requests run in a short-lived child process (httpx never
stays resident), with the same answers and failures as in-process, and a rotated token survives
the parent dying while the child's request is out."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kimi_tray.core.config import KIMI_CLIENT_ID
from kimi_tray.core.errors import LoginNeeded, TransientError
from kimi_tray.engine.http_child import ChildExchange, keep_orphaned_refresh
from kimi_tray.engine.recovery import RECOVERY_FILE, read_recovery
from kimi_tray.kimi.exchange import ExchangeFailed, HttpxExchange, Request
from kimi_tray.kimi.oauth import OAuthClient, Timeouts
from kimi_tray.stores.state import fingerprint
from tests.conftest import ROOT, kimi_file, read_json, run_cli, wait_for, write_credentials
from tests.support.exchange import refresh_request
from tests.support.mutation import child_env
from tests.support.oauth_server import FakeKimiOAuth


@pytest.fixture(autouse=True)
def mutants_reach_the_request_children(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under mutation testing the children this process starts run the active mutant too (and
    report what they covered); without it this sets nothing."""
    for name, value in child_env(ROOT).items():
        monkeypatch.setenv(name, value)


def oauth_over(exchange: ChildExchange | HttpxExchange, server: FakeKimiOAuth) -> OAuthClient:
    return OAuthClient(server.url, KIMI_CLIENT_ID, {"User-Agent": "kimi-tray/test"}, timeout=5,
                       exchange=exchange)


@pytest.mark.parametrize("exchange", [ChildExchange, HttpxExchange], ids=["child", "in-process"])
def test_a_refresh_gets_the_same_answer_either_way(exchange: type, oauth_server: FakeKimiOAuth) -> None:
    tokens = oauth_server.issue()
    token = oauth_over(exchange(), oauth_server).refresh(tokens["refresh_token"])
    assert token.refresh_token == oauth_server.rotations[-1]["refresh_token"]
    assert token.expires_in == 900
    sent = oauth_server.requests[-1]
    assert sent["headers"]["User-Agent"] == "kimi-tray/test"
    assert sent["grant_type"] == "refresh_token"


@pytest.mark.parametrize("fault, error, detail", [
    ("401", LoginNeeded, "rejected"),
    ("429:7", TransientError, "busy"),
    ("malformed", TransientError, "not JSON"),
    ("reset", TransientError, "broke"),
])
def test_server_faults_come_back_through_the_child(fault: str, error: type, detail: str,
                                                   oauth_server: FakeKimiOAuth) -> None:
    tokens = oauth_server.issue()
    oauth_server.fail_next(fault)
    with pytest.raises(error, match=detail) as caught:
        oauth_over(ChildExchange(), oauth_server).refresh(tokens["refresh_token"])
    if fault == "429:7":
        assert caught.value.retry_after == 7


def test_nothing_listening_is_unreachable_and_nothing_was_sent() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = OAuthClient(f"http://127.0.0.1:{port}", "client", exchange=ChildExchange())
    with pytest.raises(TransientError, match="Could not reach") as caught:
        client.refresh("r")
    assert not caught.value.maybe_sent


def test_a_silent_server_is_a_read_timeout_that_may_have_been_sent(oauth_server: FakeKimiOAuth) -> None:
    tokens = oauth_server.issue()
    oauth_server.fail_next("slow:3")
    with pytest.raises(TransientError, match="did not answer in time") as caught:
        oauth_over(ChildExchange(), oauth_server).refresh(tokens["refresh_token"], Timeouts(1, 0.5))
    assert caught.value.maybe_sent


def test_the_whole_reply_deadline_and_size_limit_hold_in_the_child(oauth_server: FakeKimiOAuth) -> None:
    oauth_server.issue()
    oauth_server.fail_next("trickle:3")
    request = refresh_request(oauth_server, next(iter(oauth_server.valid_refresh)), read_timeout=5,
                              whole_timeout=1)
    with pytest.raises(ExchangeFailed) as caught:
        ChildExchange().send(request)
    assert caught.value.failure == "read_timeout"
    tokens = oauth_server.issue()
    small = refresh_request(oauth_server, tokens["refresh_token"], max_bytes=10)
    with pytest.raises(ExchangeFailed) as caught:
        ChildExchange().send(small)
    assert (caught.value.failure, caught.value.name) == ("broken", "ReplyTooLarge")


def test_a_child_that_cannot_start_falls_back_to_this_process(
        oauth_server: FakeKimiOAuth, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    tokens = oauth_server.issue()
    token = oauth_over(ChildExchange(), oauth_server).refresh(tokens["refresh_token"])
    assert token.refresh_token == oauth_server.rotations[-1]["refresh_token"]


def test_the_request_never_appears_in_the_childs_command_line(oauth_server: FakeKimiOAuth) -> None:
    tokens = oauth_server.issue()
    seen: list[str] = []

    def look() -> None:  # while the server holds the answer, the child is alive
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                with contextlib.suppress(OSError):  # it ended meanwhile
                    seen.append(Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"))

    oauth_server.on_rotate = look
    oauth_over(ChildExchange(), oauth_server).refresh(tokens["refresh_token"])
    assert any("kimi_tray.engine.http_child" in line for line in seen)
    assert not any(tokens["refresh_token"] in line for line in seen)


def test_an_orphaned_refresh_answer_is_kept_for_the_next_start(tmp_path: Path,
                                                               oauth_server: FakeKimiOAuth) -> None:
    """The unit under the end-to-end test below: only a 200 refresh answer is kept."""
    from kimi_tray.kimi.exchange import Reply

    recovery = tmp_path / RECOVERY_FILE
    form = {"grant_type": "refresh_token", "refresh_token": "old"}
    body = json.dumps({"access_token": "a", "refresh_token": "new", "expires_in": 900}).encode()
    keep_orphaned_refresh(Request("POST", "u", form={**form, "grant_type": "device_code"}),
                          Reply(200, body), recovery)
    keep_orphaned_refresh(Request("POST", "u", form=form), Reply(400, body), recovery)
    assert not recovery.exists()
    keep_orphaned_refresh(Request("POST", "u", form=form), Reply(200, body), recovery)
    kept = read_recovery(recovery)
    assert kept is not None and kept.refresh_token == "new" and kept.replaces == fingerprint("old")
    assert oct(recovery.stat().st_mode & 0o777) == "0o600"


def test_the_daemon_killed_while_its_request_is_out_loses_no_login(
        env: dict[str, str], home: Path, oauth_server: FakeKimiOAuth, tmp_path: Path) -> None:
    path = write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 60)  # due now
    daemon = subprocess.Popen([sys.executable, "-m", "kimi_tray", "daemon"], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    oauth_server.fail_next("late:1.5")  # rotate, then answer 1.5 s later
    oauth_server.on_rotate = lambda: daemon.send_signal(signal.SIGKILL)
    try:
        assert wait_for(lambda: oauth_server.successful_refreshes == 1, timeout=30)
    finally:
        daemon.wait(10)
    assert daemon.returncode == -signal.SIGKILL
    recovery = home / ".local" / "state" / "kimi-tray" / RECOVERY_FILE
    assert wait_for(recovery.exists, timeout=10), "the child did not keep the rotated token"
    rotated = oauth_server.rotations[-1]["refresh_token"]
    assert read_json(path)["refresh_token"] != rotated  # the daemon died before saving it
    result = run_cli(["renew"], env)  # the next start puts it in place before anything else
    assert result.returncode == 0, result.stderr
    assert read_json(path)["refresh_token"] == rotated
    assert not recovery.exists()
    assert oauth_server.reused == []


def test_a_child_that_dies_without_answering_may_have_sent_the_request(
        oauth_server: FakeKimiOAuth, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever kills the child (here: an interpreter that exits at once), the refresh is a
    transient fault that may have reached the server, said in words, with no traceback."""
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    tokens = oauth_server.issue()
    with pytest.raises(TransientError, match="ended without an answer") as caught:
        oauth_over(ChildExchange(), oauth_server).refresh(tokens["refresh_token"])
    assert caught.value.maybe_sent
    assert oauth_server.refresh_calls == 0
