"""The one HTTP client factory: no redirects followed, nothing read from the environment (proxies,
certificate files), one TLS context for the whole process."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from kimi_tray.kimi import httpclient
from kimi_tray.kimi.httpclient import new_client, tls_context


@pytest.fixture
def redirecting_server() -> Iterator[str]:
    """Answers every GET with a redirect to /elsewhere, and /elsewhere with 200, echoing a header."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            if self.path == "/elsewhere":
                self.send_response(200)
            else:
                self.send_response(302)
                self.send_header("Location", "/elsewhere")
            self.send_header("X-Seen-Agent", self.headers.get("User-Agent", ""))
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def fresh_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(httpclient, "_tls", None)


def test_a_redirect_is_returned_not_followed_and_headers_are_sent(redirecting_server: str) -> None:
    with new_client({"User-Agent": "kimi-tray/test"}, 5.0) as client:
        reply = client.get(redirecting_server + "/api/oauth/token")
    assert reply.status_code == 302
    assert reply.headers["X-Seen-Agent"] == "kimi-tray/test"


def test_proxies_from_the_environment_are_not_used(redirecting_server: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy variable meant for the browser must not carry the tokens elsewhere."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with new_client(None, 5.0) as client:
        assert client.get(redirecting_server + "/elsewhere").status_code == 200
        assert client.trust_env is False


def test_the_timeout_given_is_the_clients(redirecting_server: str) -> None:
    with new_client(None, 2.5) as client:
        assert client.timeout == httpx.Timeout(2.5)
        assert client.follow_redirects is False


def test_every_client_shares_one_verifying_tls_context(fresh_tls: None) -> None:
    context = tls_context()
    assert tls_context() is context
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    with new_client(None, 5.0) as first, new_client({"A": "b"}, 5.0) as second:
        for client in (first, second):
            pool = client._transport._pool  # type: ignore[attr-defined]
            assert pool._ssl_context is context


def test_certificate_variables_from_the_environment_are_ignored(
        fresh_tls: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """SSL_CERT_FILE pointing at something else must not change whom we trust (nor break us)."""
    bogus = tmp_path / "not-a-bundle.pem"
    bogus.write_text("not a certificate\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(bogus))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    context = tls_context()
    assert context.cert_store_stats()["x509_ca"] > 50  # the certifi bundle's authorities


def test_a_given_transport_is_used_as_it_is() -> None:
    """Tests hand their own transport (it does its own TLS)."""
    transport = httpx.MockTransport(lambda request: httpx.Response(204))
    with new_client(None, 5.0, transport) as client:
        assert client.get("https://example.invalid/").status_code == 204
