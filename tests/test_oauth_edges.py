"""The OAuth client against a loopback server that answers exactly what a test scripts: empty and
zero fields, odd status codes, Retry-After in both forms, every device-login ending."""

from __future__ import annotations

import email.utils
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from kimi_tray import __version__
from kimi_tray.core.config import KIMI_CLIENT_ID
from kimi_tray.core.errors import DeviceFlowError, LoginNeeded, TransientError
from kimi_tray.kimi.oauth import (
    DEVICE_GRANT,
    AuthorizationPending,
    OAuthClient,
    SlowDown,
    device_headers,
    plausible_lifetime,
    retry_after_seconds,
    safe_lifetime,
)
from tests.support.oauth_server import make_jwt

NOW = 1_800_000_000.0


class ScriptedServer:
    """Answers each POST with the next scripted (status, body, headers); records what it got."""

    def __init__(self) -> None:
        self.replies: deque[tuple[int, bytes, dict[str, str]]] = deque()
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return

            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                length = int(self.headers.get("Content-Length") or 0)
                owner.requests.append((self.path, parse_qs(self.rfile.read(length).decode())))
                status, body, headers = owner.replies.popleft()
                if status == 0:  # hang up without an answer
                    self.close_connection = True
                    return
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def reply(self, body: object, status: int = 200, **headers: str) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.replies.append((status, data, {k.replace("_", "-"): v for k, v in headers.items()}))


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    yield server
    server.server.shutdown()
    server.server.server_close()


def client(server: ScriptedServer, now: float = NOW) -> OAuthClient:
    return OAuthClient(server.url + "/", KIMI_CLIENT_ID, timeout=5, now=lambda: now)


GOOD = {"access_token": "at-new", "refresh_token": "rt-new", "expires_in": 900, "scope": "kimi-code",
        "token_type": "Bearer"}


def test_refresh_posts_the_grant_to_the_token_path(scripted: ScriptedServer) -> None:
    scripted.reply(GOOD)
    token = client(scripted).refresh("rt-old")
    assert scripted.requests == [("/api/oauth/token", {
        "client_id": [KIMI_CLIENT_ID], "grant_type": ["refresh_token"], "refresh_token": ["rt-old"]})]
    assert (token.access_token, token.refresh_token, token.expires_in, token.scope, token.token_type,
            token.warning) == ("at-new", "rt-new", 900.0, "kimi-code", "Bearer", "")
    assert "at-new" not in repr(token) and "rt-new" not in repr(token)
    assert repr(token) == "TokenResponse(expires_in=900.0)"


@pytest.mark.parametrize("change", [
    {"refresh_token": ""}, {"access_token": ""}, {"access_token": None}, {"refresh_token": 17},
    {"access_token": ["at"]},
])
def test_empty_or_wrong_typed_tokens_are_refused(scripted: ScriptedServer, change: dict) -> None:
    scripted.reply({**GOOD, **change})
    with pytest.raises(TransientError, match="^The Kimi OAuth server's reply lacks the new tokens.$"):
        client(scripted).refresh("rt-old")


@pytest.mark.parametrize("missing", ["access_token", "refresh_token"])
def test_missing_tokens_are_refused(scripted: ScriptedServer, missing: str) -> None:
    scripted.reply({k: v for k, v in GOOD.items() if k != missing})
    with pytest.raises(TransientError, match="lacks the new tokens"):
        client(scripted).refresh("rt-old")


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"not json at all"])
def test_a_200_that_is_not_a_json_object_is_transient(scripted: ScriptedServer, body: bytes) -> None:
    scripted.reply(body)
    with pytest.raises(TransientError, match="^The Kimi OAuth server sent a reply that is not JSON.$"):
        client(scripted).refresh("rt-old")


@pytest.mark.parametrize(("value", "shown"), [
    (0, "0"), (-900, "-900"), (86401, "86401"), (True, "a bool"), ("900", "a str"),
    (None, "missing"), ([900], "a list"),
])
def test_implausible_expires_in_keeps_the_tokens_with_300_s(scripted: ScriptedServer, value: object,
                                                            shown: str, caplog) -> None:
    scripted.reply({**GOOD, "expires_in": value})
    token = client(scripted).refresh("rt-old")
    assert token.access_token == "at-new" and token.expires_in == 300.0
    assert token.warning == (f"The Kimi OAuth server sent expires_in {shown}, which cannot be right; "
                             "the new tokens are kept with a safe 300 s (300 s).")
    assert [r.getMessage() for r in caplog.records if r.name == "kimi_tray.kimi.oauth"] == [token.warning]


def test_missing_expires_in_is_said_as_missing(scripted: ScriptedServer) -> None:
    scripted.reply({k: v for k, v in GOOD.items() if k != "expires_in"})
    assert "expires_in missing," in client(scripted).refresh("rt-old").warning


def test_non_finite_expires_in_is_implausible(scripted: ScriptedServer) -> None:
    scripted.reply(json.dumps({**GOOD, "expires_in": 0}).replace('"expires_in": 0', '"expires_in": NaN')
                   .encode())
    token = client(scripted).refresh("rt-old")
    assert token.expires_in == 300.0 and "expires_in nan," in token.warning


@pytest.mark.parametrize("lifetime", [60, 300, 900, 3600, 86400])
def test_plausible_lifetimes_are_kept(scripted: ScriptedServer, lifetime: int) -> None:
    scripted.reply({**GOOD, "expires_in": lifetime})
    token = client(scripted).refresh("rt-old")
    assert token.expires_in == float(lifetime) and token.warning == ""


def test_plausible_lifetime_edges() -> None:
    assert plausible_lifetime(0.001) and plausible_lifetime(86400) and plausible_lifetime(86400.0)
    assert not plausible_lifetime(0) and not plausible_lifetime(86400.001)
    assert not plausible_lifetime(float("inf")) and not plausible_lifetime(False)
    assert not plausible_lifetime("60")


@pytest.mark.parametrize("left", [1, 600, 86400])
def test_zero_expires_in_falls_back_to_the_access_tokens_own_expiry(scripted: ScriptedServer,
                                                                    left: int) -> None:
    access = make_jwt({"sub": "u", "exp": NOW + left})
    scripted.reply({**GOOD, "access_token": access, "expires_in": 0})
    token = client(scripted).refresh("rt-old")
    assert token.expires_in == float(left)
    assert token.warning == (f"The Kimi OAuth server sent expires_in 0, which cannot be right; "
                             f"the new tokens are kept with the access token's own expiry ({left} s).")


@pytest.mark.parametrize("exp", [NOW, NOW - 10, NOW + 86401])
def test_an_access_token_expiry_that_is_no_better_gives_300_s(exp: float) -> None:
    lifetime, warning = safe_lifetime(0, make_jwt({"exp": exp}), NOW)
    assert lifetime == 300.0 and "a safe 300 s" in warning


def test_scope_and_token_type_defaults(scripted: ScriptedServer) -> None:
    scripted.reply({"access_token": "a", "refresh_token": "r", "expires_in": 900})
    scripted.reply({**GOOD, "scope": 5, "token_type": ""})
    scripted.reply({**GOOD, "scope": "", "token_type": 7})
    scripted.reply({**GOOD, "scope": "other", "token_type": "MAC"})
    got = [(t.scope, t.token_type) for t in (client(scripted).refresh("r") for _ in range(4))]
    assert got == [("", "Bearer"), ("", "Bearer"), ("", "Bearer"), ("other", "MAC")]


@pytest.mark.parametrize(("status", "body"), [
    (401, {}), (403, {"error": "forbidden"}), (400, {"error": "invalid_grant"}),
    (200, {"error": "invalid_grant"}), (500, {"error": "invalid_grant"}),
])
def test_dead_refresh_token_means_login_needed(scripted: ScriptedServer, status: int, body: dict) -> None:
    scripted.reply(body, status=status)
    with pytest.raises(LoginNeeded, match="^The Kimi refresh token was rejected; a new login is needed.$"):
        client(scripted).refresh("rt-old")


@pytest.mark.parametrize(("status", "body", "message"), [
    (400, {"error": "invalid_request"}, "HTTP 400 (invalid_request)."),
    (400, {"error": 5}, "HTTP 400."),
    (404, b"<html>", "HTTP 404."),
    (499, {}, "HTTP 499."),
    (302, {}, "HTTP 302."),
])
def test_other_answers_are_transient_with_the_status(scripted: ScriptedServer, status: int, body: object,
                                                     message: str) -> None:
    scripted.reply(body, status=status)
    with pytest.raises(TransientError) as info:
        client(scripted).refresh("rt-old")
    assert str(info.value) == f"The Kimi OAuth server answered {message}"
    assert info.value.retry_after is None


@pytest.mark.parametrize("status", [429, 500, 502, 503, 599])
def test_busy_or_failing_server_is_transient_with_its_retry_after(scripted: ScriptedServer,
                                                                 status: int) -> None:
    scripted.reply({}, status=status, Retry_After="7200")  # far beyond any backoff: passed on whole
    with pytest.raises(TransientError) as info:
        client(scripted).refresh("rt-old")
    assert str(info.value) == f"The Kimi OAuth server is busy or failing (HTTP {status})."
    assert info.value.retry_after == 7200.0 and not info.value.maybe_sent


def test_busy_server_without_retry_after(scripted: ScriptedServer) -> None:
    scripted.reply({}, status=429)
    with pytest.raises(TransientError) as info:
        client(scripted).refresh("rt-old")
    assert info.value.retry_after is None


def test_retry_after_as_an_http_date(scripted: ScriptedServer) -> None:
    scripted.reply({}, status=503, Retry_After=email.utils.formatdate(time.time() + 120, usegmt=True))
    with pytest.raises(TransientError) as info:
        client(scripted).refresh("rt-old")
    assert 100 <= info.value.retry_after <= 121


@pytest.mark.parametrize(("value", "seconds"), [
    (None, None), ("", None), ("7", 7.0), ("1.5", 1.5), ("0", 0.0), ("-3", 0.0), ("soon", None),
    ("86400", 86400.0), (email.utils.formatdate(0, usegmt=True), 0.0),
])
def test_retry_after_values(value: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(value) == seconds


def test_connection_dropped_without_an_answer_may_have_been_sent(scripted: ScriptedServer) -> None:
    scripted.replies.append((0, b"", {}))
    with pytest.raises(TransientError, match="broke") as info:
        client(scripted).refresh("rt-old")
    assert info.value.maybe_sent


def test_connection_refused_was_not_sent() -> None:
    with pytest.raises(TransientError) as info:
        OAuthClient("http://127.0.0.1:9", KIMI_CLIENT_ID, timeout=2).refresh("rt")
    assert str(info.value) == "Could not reach the Kimi OAuth server at http://127.0.0.1:9."
    assert not info.value.maybe_sent


def test_a_per_call_timeout_overrides_the_clients() -> None:
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(5)  # a client that never connects ends the holder too
    done = threading.Event()

    def hold_then_hang_up() -> None:
        """Accepts the connection and never answers; hangs up after 5 s, so a client that lost
        its timeout fails in seconds instead of waiting forever."""
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        done.wait(5)
        connection.close()

    holder = threading.Thread(target=hold_then_hang_up, daemon=True)
    holder.start()
    try:
        host = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(TransientError, match="did not answer in time") as info:
            OAuthClient(host, KIMI_CLIENT_ID, timeout=30).refresh("rt", timeout=0.3)
        assert time.monotonic() - started < 4
        assert info.value.maybe_sent
    finally:
        done.set()
        holder.join(5)
        listener.close()


def test_device_headers_name_kimi_tray_and_the_device() -> None:
    headers = device_headers("d" * 32)
    assert headers["User-Agent"] == f"kimi-tray/{__version__}"
    assert headers["X-Msh-Platform"] == "kimi_cli" and headers["X-Msh-Device-Id"] == "d" * 32
    assert "X-Msh-Version" not in headers
    assert all(headers[k] for k in ("X-Msh-Device-Name", "X-Msh-Device-Model", "X-Msh-Os-Version"))


# ----------------------------------------------------------------------------- device login

LACKS_FIELDS = "^The Kimi OAuth server's login answer lacks required fields.$"


def test_device_login_start_reads_every_field(scripted: ScriptedServer) -> None:
    scripted.reply({"user_code": "ABCD", "device_code": "dc", "verification_uri": "https://v",
                    "verification_uri_complete": "https://v?c=ABCD", "expires_in": 120, "interval": 2})
    auth = client(scripted).start_device_login()
    assert scripted.requests == [("/api/oauth/device_authorization", {"client_id": [KIMI_CLIENT_ID]})]
    assert (auth.user_code, auth.device_code, auth.verification_uri, auth.verification_uri_complete,
            auth.expires_in, auth.interval) == ("ABCD", "dc", "https://v", "https://v?c=ABCD", 120.0, 2.0)
    assert "dc" not in repr(auth) and "ABCD" in repr(auth)


@pytest.mark.parametrize("empty", [None, 0, ""])
def test_device_login_start_defaults(scripted: ScriptedServer, empty: object) -> None:
    scripted.reply({"user_code": "ABCD", "device_code": "dc", "verification_uri": "https://v",
                    "verification_uri_complete": empty or None, "expires_in": empty, "interval": empty})
    auth = client(scripted).start_device_login()
    assert (auth.verification_uri_complete, auth.expires_in, auth.interval) == ("https://v", 600.0, 5.0)


@pytest.mark.parametrize("missing", ["user_code", "device_code", "verification_uri"])
def test_device_login_start_without_a_required_field(scripted: ScriptedServer, missing: str) -> None:
    body = {"user_code": "A", "device_code": "d", "verification_uri": "https://v"}
    del body[missing]
    scripted.reply(body)
    with pytest.raises(DeviceFlowError, match=LACKS_FIELDS):
        client(scripted).start_device_login()


def test_device_login_start_with_a_bad_interval(scripted: ScriptedServer) -> None:
    scripted.reply({"user_code": "A", "device_code": "d", "verification_uri": "https://v", "interval": "x"})
    with pytest.raises(DeviceFlowError, match=LACKS_FIELDS):
        client(scripted).start_device_login()


@pytest.mark.parametrize(("status", "body"), [(400, {"error": "invalid_client"}), (200, b"[]")])
def test_device_login_start_refused(scripted: ScriptedServer, status: int, body: object) -> None:
    scripted.reply(body, status=status)
    with pytest.raises(DeviceFlowError) as info:
        client(scripted).start_device_login()
    assert str(info.value) == f"The Kimi OAuth server refused to start a login (HTTP {status})."


def test_device_login_start_on_a_failing_server_is_transient(scripted: ScriptedServer) -> None:
    scripted.reply({}, status=503, Retry_After="30")
    with pytest.raises(TransientError) as info:
        client(scripted).start_device_login()
    assert info.value.retry_after == 30.0


def test_device_poll_endings(scripted: ScriptedServer) -> None:
    for error in ("authorization_pending", "slow_down", "expired_token", "access_denied", "other"):
        scripted.reply({"error": error}, status=400)
    scripted.reply({"error": 3}, status=400)
    scripted.reply(GOOD)
    oauth = client(scripted)
    with pytest.raises(AuthorizationPending):
        oauth.poll_device_token("dc")
    assert scripted.requests[0] == ("/api/oauth/token", {
        "client_id": [KIMI_CLIENT_ID], "device_code": ["dc"], "grant_type": [DEVICE_GRANT]})
    with pytest.raises(SlowDown):
        oauth.poll_device_token("dc")
    with pytest.raises(DeviceFlowError,
                       match="^The login code expired before it was approved; start again.$"):
        oauth.poll_device_token("dc")
    with pytest.raises(DeviceFlowError, match="^The login was denied in the browser.$"):
        oauth.poll_device_token("dc")
    with pytest.raises(DeviceFlowError) as info:
        oauth.poll_device_token("dc")
    assert str(info.value) == "The Kimi OAuth server rejected the login (HTTP 400, other)."
    with pytest.raises(DeviceFlowError) as info:
        oauth.poll_device_token("dc")
    assert str(info.value) == "The Kimi OAuth server rejected the login (HTTP 400)."
    assert oauth.poll_device_token("dc").refresh_token == "rt-new"


def test_device_poll_on_a_failing_server_is_transient(scripted: ScriptedServer) -> None:
    scripted.reply({"error": "server_error"}, status=502)
    with pytest.raises(TransientError, match=r"HTTP 502"):
        client(scripted).poll_device_token("dc")


@pytest.mark.parametrize("body", [b"[]", b"not json"])
def test_device_poll_reply_that_is_not_an_object(scripted: ScriptedServer, body: bytes) -> None:
    scripted.reply(body)
    with pytest.raises(TransientError, match="not JSON"):
        client(scripted).poll_device_token("dc")


def test_device_poll_with_a_bad_lifetime_uses_the_access_tokens_expiry(scripted: ScriptedServer) -> None:
    scripted.reply({**GOOD, "access_token": make_jwt({"exp": NOW + 700}), "expires_in": 0})
    assert client(scripted).poll_device_token("dc").expires_in == 700.0


def test_device_poll_reply_with_an_empty_refresh_token_is_refused(scripted: ScriptedServer) -> None:
    scripted.reply({**GOOD, "refresh_token": ""})
    with pytest.raises(TransientError, match="lacks the new tokens"):
        client(scripted).poll_device_token("dc")
