"""The in-process exchange at its limits: a reply exactly as large as allowed is read, one byte
more is refused; a broken connection is named, as the OAuth client's message shows it; a server
that takes no connection is a connect timeout (nothing sent) within the request's own limit."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from kimi_tray.kimi.exchange import ExchangeFailed, HttpxExchange, Request
from tests.support.exchange import refresh_request
from tests.support.oauth_server import FakeKimiOAuth


def token_request(server: FakeKimiOAuth, max_bytes: int = 1 << 20) -> Request:
    return refresh_request(server, server.issue()["refresh_token"], max_bytes=max_bytes)


def test_a_reply_of_exactly_the_limit_is_read_and_one_byte_more_is_not(oauth_server: FakeKimiOAuth) -> None:
    exchange = HttpxExchange()
    size = len(exchange.send(token_request(oauth_server)).body)
    assert size > 100  # a whole token answer
    assert len(exchange.send(token_request(oauth_server, max_bytes=size)).body) == size
    with pytest.raises(ExchangeFailed) as caught:
        exchange.send(token_request(oauth_server, max_bytes=size - 1))
    assert (caught.value.failure, caught.value.name) == ("broken", "ReplyTooLarge")


@pytest.mark.parametrize("fault, name", [("reset", "ReadError"), ("drop", "RemoteProtocolError")])
def test_a_broken_connection_is_named(fault: str, name: str, oauth_server: FakeKimiOAuth) -> None:
    request = token_request(oauth_server)
    oauth_server.fail_next(fault)
    with pytest.raises(ExchangeFailed) as caught:
        HttpxExchange().send(request)
    assert (caught.value.failure, caught.value.name) == ("broken", name)


def test_a_server_that_takes_no_connection_is_a_connect_timeout_within_its_limit() -> None:
    """Its accept queue is full, so the kernel drops our connection attempt (as a host that is
    down does): the request's connect limit (0.5 s), not its read limit (10 s), ends it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=5)  # fills the queue
    outcome: list[object] = []

    def send() -> None:
        try:
            HttpxExchange().send(Request("GET", f"http://127.0.0.1:{port}/", connect_timeout=0.5,
                                         read_timeout=10))
        except ExchangeFailed as exc:
            outcome.append(exc.failure)

    started = time.monotonic()
    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    thread.join(4)
    try:
        assert outcome == ["connect_timeout"], "no connect limit: still waiting after 4 s"
        assert time.monotonic() - started < 4
    finally:
        filler.close()
        listener.close()
