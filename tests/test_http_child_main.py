"""The request child's own side, run in this process: what it prints, when it keeps a refresh
answer for the next start, and when it sends nothing. (tests/test_http_child.py runs it as the
real child process, end to end.)"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kimi_tray.core.config import KIMI_CLIENT_ID
from kimi_tray.engine import http_child
from kimi_tray.engine.http_child import ACK, NO_ANSWER, ChildExchange, child_exchanges, main
from kimi_tray.engine.recovery import RECOVERY_FILE, read_recovery
from kimi_tray.kimi.exchange import ExchangeFailed, HttpxExchange, Request
from kimi_tray.stores.state import fingerprint
from tests.support.exchange import refresh_request
from tests.support.oauth_server import FakeKimiOAuth

KEPT_REASON = "kimi-tray stopped before it could save the server's answer."


class BrokenPipe(io.RawIOBase):
    """A stdout whose reader is gone."""

    def writable(self) -> bool:
        return True

    def write(self, _data: Any) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def run_child(monkeypatch: pytest.MonkeyPatch, request: Request, after: bytes = ACK, *,
              recovery: Path | None = None, parent: int | None = None,
              stdout: io.RawIOBase | None = None) -> tuple[int, list[dict[str, Any]]]:
    """main() with the message (and what the parent answers after the reply) on stdin."""
    message = {"parent": os.getppid() if parent is None else parent, "request": request.to_json(),
               "recovery_file": None if recovery is None else str(recovery)}
    raw_out = stdout if stdout is not None else io.BytesIO()
    sent = json.dumps(message).encode() + b"\n" + after
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(sent)))
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BufferedWriter(raw_out)))  # type: ignore[arg-type]
    code = main()
    if not isinstance(raw_out, io.BytesIO):
        return code, []
    return code, [json.loads(line) for line in raw_out.getvalue().splitlines()]


def test_an_acknowledged_reply_is_one_line_and_nothing_is_kept(
        monkeypatch: pytest.MonkeyPatch, oauth_server: FakeKimiOAuth, tmp_path: Path) -> None:
    tokens = oauth_server.issue()
    recovery = tmp_path / RECOVERY_FILE
    code, lines = run_child(monkeypatch, refresh_request(oauth_server, tokens["refresh_token"]),
                            recovery=recovery)
    assert code == 0
    assert len(lines) == 1
    answer = lines[0]
    assert answer["status"] == 200 and answer["retry_after"] is None
    body = json.loads(base64.b64decode(answer["body"]))
    assert body["refresh_token"] == oauth_server.rotations[-1]["refresh_token"]
    assert not recovery.exists()


@pytest.mark.parametrize("after", [b"", b"no\n", b"ok"], ids=["parent-gone", "other-line", "cut-short"])
def test_an_unacknowledged_refresh_answer_is_kept_for_the_next_start(
        after: bytes, monkeypatch: pytest.MonkeyPatch, oauth_server: FakeKimiOAuth, tmp_path: Path) -> None:
    tokens = oauth_server.issue()
    recovery = tmp_path / "state" / RECOVERY_FILE
    before = time.time()
    run_child(monkeypatch, refresh_request(oauth_server, tokens["refresh_token"]), after, recovery=recovery)
    kept = read_recovery(recovery)
    assert kept is not None
    assert [kept.access_token, kept.refresh_token] == oauth_server.issued[-2:]  # the rotated pair
    assert kept.replaces == fingerprint(tokens["refresh_token"])
    assert kept.expires_in == 900
    assert before + 900 <= kept.expires_at <= time.time() + 900
    assert kept.reason == KEPT_REASON
    assert oct(recovery.stat().st_mode & 0o777) == "0o600"


def test_a_parent_whose_reader_is_gone_gets_the_answer_kept(
        monkeypatch: pytest.MonkeyPatch, oauth_server: FakeKimiOAuth, tmp_path: Path) -> None:
    tokens = oauth_server.issue()
    recovery = tmp_path / RECOVERY_FILE
    code, _ = run_child(monkeypatch, refresh_request(oauth_server, tokens["refresh_token"]), ACK,
                        recovery=recovery, stdout=BrokenPipe())
    assert code == 0
    kept = read_recovery(recovery)
    assert kept is not None and kept.refresh_token == oauth_server.rotations[-1]["refresh_token"]


def test_without_a_recovery_file_an_unacknowledged_answer_is_only_printed(
        monkeypatch: pytest.MonkeyPatch, oauth_server: FakeKimiOAuth, tmp_path: Path) -> None:
    tokens = oauth_server.issue()
    monkeypatch.chdir(tmp_path)
    code, lines = run_child(monkeypatch, refresh_request(oauth_server, tokens["refresh_token"]), b"")
    assert code == 0 and lines[0]["status"] == 200
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fault", ["401", "malformed"])
def test_only_a_good_refresh_answer_is_kept(fault: str, monkeypatch: pytest.MonkeyPatch,
                                            oauth_server: FakeKimiOAuth, tmp_path: Path) -> None:
    tokens = oauth_server.issue()
    oauth_server.fail_next(fault)
    recovery = tmp_path / RECOVERY_FILE
    _, lines = run_child(monkeypatch, refresh_request(oauth_server, tokens["refresh_token"]), b"",
                         recovery=recovery)
    assert lines[0]["status"] == (401 if fault == "401" else 200)
    assert not recovery.exists()


def test_a_device_login_poll_is_never_kept(monkeypatch: pytest.MonkeyPatch, oauth_server: FakeKimiOAuth,
                                           tmp_path: Path) -> None:
    """An approved login's tokens have no old token to replace: the login asks again."""
    oauth_server.device_script = ["ok"]
    started = HttpxExchange().send(Request("POST", oauth_server.url + "/api/oauth/device_authorization",
                                           form={"client_id": KIMI_CLIENT_ID}))
    form = {"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "device_code": json.loads(started.body)["device_code"], "client_id": KIMI_CLIENT_ID}
    recovery = tmp_path / RECOVERY_FILE
    _, lines = run_child(monkeypatch, Request("POST", oauth_server.url + "/api/oauth/token", form=form),
                         b"", recovery=recovery)
    assert lines[0]["status"] == 200
    assert not recovery.exists()


def test_a_child_whose_parent_is_gone_sends_nothing(monkeypatch: pytest.MonkeyPatch,
                                                    oauth_server: FakeKimiOAuth, tmp_path: Path) -> None:
    tokens = oauth_server.issue()
    code, lines = run_child(monkeypatch, refresh_request(oauth_server, tokens["refresh_token"]),
                            recovery=tmp_path / RECOVERY_FILE, parent=os.getppid() + 100_000)
    assert (code, lines) == (0, [])
    assert oauth_server.refresh_calls == 0


def test_the_retry_after_and_the_failures_are_printed(monkeypatch: pytest.MonkeyPatch,
                                                      oauth_server: FakeKimiOAuth) -> None:
    tokens = oauth_server.issue()
    oauth_server.fail_next("429:7")
    _, lines = run_child(monkeypatch, refresh_request(oauth_server, tokens["refresh_token"]))
    assert (lines[0]["status"], lines[0]["retry_after"]) == (429, "7")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _, lines = run_child(monkeypatch, Request("POST", f"http://127.0.0.1:{port}/api/oauth/token",
                                              form={"grant_type": "refresh_token"}))
    assert lines == [{"failed": "unreachable", "name": "ConnectError"}]


# ----------------------------------------------------------------------------- the parent's side
@pytest.mark.parametrize("line, failure, name", [
    (b'{"failed": "read_timeout", "name": "ReadTimeout"}\n', "read_timeout", "ReadTimeout"),
    (b'{"failed": "on fire", "name": "X"}\n', "broken", "X"),
    (b'{"failed": "unreachable"}\n', "unreachable", ""),
    (b"Traceback (most recent call last):\n", "broken", NO_ANSWER),
    (b"", "broken", NO_ANSWER),
    (b'{"status": 200}\n', "broken", NO_ANSWER),
])
def test_what_the_child_printed_becomes_a_reply_or_a_failure(line: bytes, failure: str, name: str) -> None:
    with pytest.raises(ExchangeFailed) as caught:
        http_child._reply_from(line)
    assert (caught.value.failure, caught.value.name) == (failure, name)


def test_a_printed_reply_is_read_whole() -> None:
    body = b'{"a": 1}'
    reply = http_child._reply_from(json.dumps(
        {"status": 429, "body": base64.b64encode(body).decode(), "retry_after": "3"}).encode() + b"\n")
    assert (reply.status, reply.body, reply.retry_after) == (429, body, "3")


def test_an_unacknowledging_parent_leaves_the_answer_to_the_child(
        monkeypatch: pytest.MonkeyPatch, oauth_server: FakeKimiOAuth, tmp_path: Path) -> None:
    """The parent tells the real child where to keep it: a parent that says anything but the
    acknowledgement (as a dead one would say nothing) finds the rotated token there."""
    monkeypatch.setattr(http_child, "ACK", b"not ok\n")
    tokens = oauth_server.issue()
    recovery = tmp_path / RECOVERY_FILE
    ChildExchange(recovery).send(refresh_request(oauth_server, tokens["refresh_token"]))
    kept = read_recovery(recovery)
    assert kept is not None and kept.refresh_token == oauth_server.rotations[-1]["refresh_token"]


def test_a_child_that_stops_reading_at_once_is_no_answer(
        monkeypatch: pytest.MonkeyPatch, oauth_server: FakeKimiOAuth, tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexec 0<&-\nsleep 0.3\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    with pytest.raises(ExchangeFailed) as caught:
        ChildExchange().send(refresh_request(oauth_server, "r"))
    assert (caught.value.failure, caught.value.name) == ("broken", NO_ANSWER)


def test_a_child_that_cannot_start_is_said_once_in_words(monkeypatch: pytest.MonkeyPatch,
                                                        oauth_server: FakeKimiOAuth,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    tokens = oauth_server.issue()
    exchange = ChildExchange()
    with caplog.at_level(logging.WARNING, logger=http_child.__name__):
        reply = exchange.send(refresh_request(oauth_server, tokens["refresh_token"]))
    assert reply.status == 200
    assert caplog.messages == ["Could not start a process for an HTTP request (No such file or "
                               "directory); sending it from this one."]
    fallback = exchange._fallback
    assert fallback is not None and fallback._client is not None
    exchange.close()
    assert fallback._client.is_closed


def test_the_long_running_faces_get_children_and_the_one_file_build_does_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exchange = child_exchanges(tmp_path)()
    assert isinstance(exchange, ChildExchange)
    assert exchange.recovery_file == tmp_path / RECOVERY_FILE
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert isinstance(child_exchanges(tmp_path)(), HttpxExchange)
