"""The OAuth client against a real loopback server with rotating tokens and faults."""

from __future__ import annotations

import pytest

from kimi_tray.core.config import KIMI_CLIENT_ID
from kimi_tray.core.errors import ConfigError, LoginNeeded, TransientError
from kimi_tray.kimi.oauth import OAuthClient, device_headers
from tests.support.oauth_server import FakeKimiOAuth


def client(server: FakeKimiOAuth, timeout: float = 5.0) -> OAuthClient:
    return OAuthClient(server.url, KIMI_CLIENT_ID, device_headers("f" * 32), timeout=timeout)


def test_refresh_rotates_and_sends_the_kimi_cli_headers(oauth_server: FakeKimiOAuth) -> None:
    first = oauth_server.issue()
    token = client(oauth_server).refresh(first["refresh_token"])
    assert token.refresh_token != first["refresh_token"] and token.expires_in == 900
    headers = oauth_server.requests[-1]["headers"]
    assert headers["X-Msh-Platform"] == "kimi_cli"
    assert headers["X-Msh-Device-Id"] == "f" * 32
    for name in ("X-Msh-Device-Name", "X-Msh-Device-Model", "X-Msh-Os-Version"):
        assert headers[name]
    with pytest.raises(LoginNeeded):
        client(oauth_server).refresh(first["refresh_token"])  # the rotated token is dead


@pytest.mark.parametrize("fault", ["401", "403"])
def test_unauthorized_means_login_needed(oauth_server: FakeKimiOAuth, fault: str) -> None:
    oauth_server.fail_next(fault)
    with pytest.raises(LoginNeeded):
        client(oauth_server).refresh(oauth_server.issue()["refresh_token"])


@pytest.mark.parametrize(
    ("fault", "message"),
    [("500", "HTTP 500"), ("503", "HTTP 503"), ("drop", "connection .* broke"),
     ("malformed", "not JSON"), ("missing", "lacks the new tokens")],
)
def test_transient_faults(oauth_server: FakeKimiOAuth, fault: str, message: str) -> None:
    refresh = oauth_server.issue()["refresh_token"]
    oauth_server.fail_next(fault)
    with pytest.raises(TransientError, match=message) as info:
        client(oauth_server).refresh(refresh)
    assert refresh not in str(info.value)


def test_429_carries_retry_after(oauth_server: FakeKimiOAuth) -> None:
    oauth_server.fail_next("429:7")
    with pytest.raises(TransientError) as info:
        client(oauth_server).refresh(oauth_server.issue()["refresh_token"])
    assert info.value.retry_after == 7


def test_slow_server_is_a_timeout(oauth_server: FakeKimiOAuth) -> None:
    oauth_server.fail_next("slow:2")
    with pytest.raises(TransientError, match="did not answer in time"):
        client(oauth_server, timeout=0.5).refresh(oauth_server.issue()["refresh_token"])


def test_connection_refused_is_transient() -> None:
    with pytest.raises(TransientError, match="Could not reach"):
        OAuthClient("http://127.0.0.1:9", KIMI_CLIENT_ID, timeout=2).refresh("x" * 20)


@pytest.mark.parametrize("host", ["http://auth.kimi.com", "http://10.0.0.1:8080", "ftp://127.0.0.1"])
def test_plain_http_only_to_loopback(host: str) -> None:
    with pytest.raises(ConfigError):
        OAuthClient(host, KIMI_CLIENT_ID)


@pytest.mark.parametrize("host", ["http://127.0.0.1:1", "http://localhost:1", "http://[::1]:1",
                                  "https://auth.kimi.com"])
def test_allowed_hosts(host: str) -> None:
    OAuthClient(host, KIMI_CLIENT_ID).close()
