"""The usage client against the loopback usage server, one answer at a time: what it sends, and
each failure turned into the error the engine acts on (refresh and retry, back off, wait), with
its words. Fast: no engine, no tray."""

from __future__ import annotations

import socket

import pytest

from kimi_tray.core.errors import TransientError
from kimi_tray.kimi.exchange import ExchangeFailed, Reply
from kimi_tray.kimi.usage_client import MAX_REPLY, USAGES_PATH, UsageClient, UsageUnauthorized
from tests.support.exchange import ScriptedExchange
from tests.support.usage_server import FakeKimiUsage

NOW = 1_800_000_000.0


def test_one_get_with_our_headers_and_the_bearer_token(usage_server: FakeKimiUsage) -> None:
    client = UsageClient(usage_server.url + "/", {"User-Agent": "kimi-tray/test"}, timeout=5)
    usage = client.fetch("at-secret", NOW, stale_after=120)
    sent = usage_server.requests[-1]
    assert sent["path"].endswith(USAGES_PATH) and "//" not in sent["path"]
    assert sent["headers"]["Authorization"] == "Bearer at-secret"
    assert sent["headers"]["Accept"] == "application/json"
    assert sent["headers"]["User-Agent"] == "kimi-tray/test"
    assert usage.fetched_at == NOW and not usage.is_stale(NOW + 119) and usage.is_stale(NOW + 121)
    client.close()


@pytest.mark.parametrize("fault", ["401", "403"])
def test_a_refused_token_asks_for_a_refresh(usage_server: FakeKimiUsage, fault: str) -> None:
    usage_server.fail_next(fault)
    with pytest.raises(UsageUnauthorized) as caught:
        UsageClient(usage_server.url).fetch("at-secret", NOW)
    assert str(caught.value) == f"the usage server refused the access token (HTTP {fault})"


def test_busy_and_failing_servers_are_transient_with_their_wait(usage_server: FakeKimiUsage) -> None:
    usage_server.fail_next("429:42", "500")
    with pytest.raises(TransientError) as busy:
        UsageClient(usage_server.url).fetch("at-secret", NOW)
    assert str(busy.value) == "the usage server is busy or failing (HTTP 429)"
    assert busy.value.retry_after == 42
    with pytest.raises(TransientError) as failing:
        UsageClient(usage_server.url).fetch("at-secret", NOW)
    assert str(failing.value) == "the usage server is busy or failing (HTTP 500)"
    assert failing.value.retry_after is None


def test_another_status_and_a_reply_that_is_not_json(usage_server: FakeKimiUsage) -> None:
    with pytest.raises(TransientError, match=r"^the usage server answered HTTP 404$"):
        UsageClient(usage_server.url + "/elsewhere").fetch("at-secret", NOW)
    usage_server.fail_next("malformed")
    with pytest.raises(TransientError, match=r"^the usage server sent a reply that is not JSON$"):
        UsageClient(usage_server.url).fetch("at-secret", NOW)


def test_a_reply_trickling_past_the_whole_timeout_is_too_slow(usage_server: FakeKimiUsage) -> None:
    usage_server.fail_next("trickle:0.3")
    with pytest.raises(TransientError) as caught:
        UsageClient(usage_server.url, timeout=0.5).fetch("at-secret", NOW)
    assert str(caught.value) == f"the usage server at {usage_server.url} did not answer in time"


def test_nothing_listening_names_the_server_and_what_broke() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/coding/v1"
    with pytest.raises(TransientError) as caught:
        UsageClient(url, timeout=2).fetch("at-secret", NOW)
    assert str(caught.value) == f"could not reach the usage server at {url} (ConnectError)"


def test_the_request_bounds_the_whole_reply_and_its_size() -> None:
    answers = ScriptedExchange(Reply(200, b'{"usage": {}}'))
    with pytest.raises(TransientError):
        UsageClient("https://api.example.com/v1", timeout=7, exchange=answers).fetch("t", NOW)
    (request,) = answers.sent
    assert (request.method, request.url) == ("GET", "https://api.example.com/v1" + USAGES_PATH)
    assert (request.connect_timeout, request.read_timeout, request.whole_timeout) == (7, 7, 7)
    assert request.max_bytes == MAX_REPLY and request.form is None


@pytest.mark.parametrize("failure, words", [
    (ExchangeFailed("connect_timeout"), "did not answer in time"),
    (ExchangeFailed("read_timeout"), "did not answer in time"),
    (ExchangeFailed("broken", "ReplyTooLarge"), "sent a reply far too large to be usage"),
    (ExchangeFailed("broken", "RemoteProtocolError"), "(RemoteProtocolError)"),
    (ExchangeFailed("unreachable"), "(unreachable)"),
])
def test_each_way_a_request_fails_has_its_words(failure: ExchangeFailed, words: str) -> None:
    client = UsageClient("https://api.example.com/v1", exchange=ScriptedExchange(failure))
    with pytest.raises(TransientError) as caught:
        client.fetch("t", NOW)
    assert words in str(caught.value)
    assert "t" not in str(caught.value).split()


def test_a_reply_with_no_usage_in_it_is_transient_without_its_final_stop() -> None:
    client = UsageClient("https://api.example.com/v1", exchange=ScriptedExchange(Reply(200, b"[]")))
    with pytest.raises(TransientError) as caught:
        client.fetch("t", NOW)
    assert str(caught.value) and not str(caught.value).endswith(".")
