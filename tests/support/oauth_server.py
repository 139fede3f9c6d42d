"""A real HTTP server on loopback that plays Kimi's OAuth server, with faults on demand.

Refresh tokens rotate: each one works once, then it is dead (as on the real server).
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

CLIENT_ID = "17e5f671-d194-4dfb-9706-5516cb48c098"


def make_jwt(claims: dict) -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.{secrets.token_urlsafe(16)}"


@dataclass
class DeviceLogin:
    device_code: str
    user_code: str
    script: deque = field(default_factory=deque)  # e.g. "pending", "slow_down", "ok", "expired"
    polls: list = field(default_factory=list)


class FakeKimiOAuth:
    def __init__(self, lifetime: int = 900, refresh_exp: float | None = None,
                 device_interval: float = 0.05) -> None:
        self.lifetime = lifetime
        self.refresh_exp = refresh_exp
        self.device_interval = device_interval
        self.valid_refresh: set[str] = set()
        self.faults: deque[str] = deque()
        self.refresh_calls = 0
        self.successful_refreshes = 0
        self.requests: list[dict] = []
        self.issued: list[str] = []  # every token handed out, for the no-leak checks
        self.rotations: list[dict] = []  # per successful refresh: when it rotated, when it answered
        self.reused: list[str] = []  # refresh tokens sent again after they had rotated
        self.spent: set[str] = set()
        self.on_rotate: Callable[[], None] | None = None  # called when a refresh rotated
        self.on_answer: Callable[[], None] | None = None  # called when its answer is sent
        self.devices: dict[str, DeviceLogin] = {}
        self.device_script: list[str] = ["pending", "ok"]
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        # Shut down within 20 ms instead of serve_forever's 0.5 s poll: a test's teardown waits
        # for it, and mutation testing runs each test hundreds of times.
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)

    # ---------------------------------------------------------------- control
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeKimiOAuth:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def issue(self) -> dict:
        """A fresh token pair, registered as valid (what a login would give)."""
        n = next(self._counter)
        if self.refresh_exp is not None:
            refresh = make_jwt({"sub": "user", "exp": self.refresh_exp, "n": n})
        else:
            refresh = f"rt-{n}-{secrets.token_urlsafe(24)}"
        access = f"at-{n}-{secrets.token_urlsafe(32)}"
        with self._lock:
            self.valid_refresh.add(refresh)
            self.issued.extend((access, refresh))
        return {
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": self.lifetime,
            "scope": "kimi-code",
            "token_type": "Bearer",
        }

    def revoke_all(self) -> None:
        with self._lock:
            self.valid_refresh.clear()

    def fail_next(self, *faults: str) -> None:
        """Queue faults: '500', '502', '429:<retry-after>', '429-bare' (no Retry-After),
        'slow:<seconds>' (before anything), 'late:<seconds>' (rotate, then answer that much later),
        'expires:<raw JSON number>' (rotate, answer with that expires_in), 'trickle:<seconds>'
        (rotate, then send the answer a few bytes at a time over that many seconds, never pausing
        long enough for a per-read timeout to fire), 'drop', 'reset',
        'malformed', 'missing', '401', '403'."""
        with self._lock:
            self.faults.extend(faults)

    def fail_always(self, fault: str, count: int = 10_000) -> None:
        self.fail_next(*[fault] * count)

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    # ---------------------------------------------------------------- handling
    def _handler(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: object) -> None:
                return

            def _reply(self, code: int, body: object, headers: dict | None = None) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            late = 0.0
            trickle = 0.0
            raw_expires: str | None = None
            last_rotation: dict | None = None

            def _reply_trickling(self, body: object) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(data)}\r\n\r\n").encode()
                whole = head + data
                pieces = max(2, int(self.trickle / 0.5))
                size = -(-len(whole) // pieces)
                for start in range(0, len(whole), size):
                    self.wfile.write(whole[start:start + size])
                    self.wfile.flush()
                    if start + size < len(whole):
                        time.sleep(self.trickle / pieces)

            def handle_one_request(self) -> None:
                """After a refresh answer, how the client's connection ends tells whether the
                client read it: a process that dies with unread data makes its kernel send a
                reset, one that read everything closes cleanly."""
                try:
                    super().handle_one_request()
                except ConnectionResetError:
                    self.close_connection = True
                    if self.last_rotation is not None:
                        self.last_rotation["client_read"] = False
                    return
                if not self.raw_requestline and self.last_rotation is not None:
                    self.last_rotation["client_read"] = True

            def do_POST(self) -> None:  # noqa: N802
                self.late, self.trickle, self.raw_expires = 0.0, 0.0, None
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                with owner._lock:
                    owner.requests.append({"path": self.path, "headers": dict(self.headers),
                                           "grant_type": form.get("grant_type")})
                    fault = owner.faults.popleft() if owner.faults else None
                if fault and self._apply_fault(fault):
                    return
                if form.get("client_id") != CLIENT_ID:
                    return self._reply(400, {"error": "invalid_client"})
                if self.path == "/api/oauth/device_authorization":
                    return self._device_authorization()
                if self.path != "/api/oauth/token":
                    return self._reply(404, {"error": "not_found"})
                if form.get("grant_type") == "refresh_token":
                    return self._refresh(form.get("refresh_token", ""))
                if form.get("grant_type") == "urn:ietf:params:oauth:grant-type:device_code":
                    return self._device_token(form.get("device_code", ""))
                return self._reply(400, {"error": "unsupported_grant_type"})

            def _apply_fault(self, fault: str) -> bool:
                kind, _, arg = fault.partition(":")
                if kind == "trickle":
                    self.trickle = float(arg or 8)
                    return False
                if kind == "slow":
                    time.sleep(float(arg or 2))
                    return False
                if kind in ("late", "expires"):
                    self.late, self.raw_expires = (float(arg), None) if kind == "late" else (0.0, arg)
                    return False
                if kind == "reset":
                    import socket
                    import struct

                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                    return True
                if kind == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return True
                if kind in ("500", "502"):
                    self._reply(int(kind), {"error": "server_error"})
                elif kind == "429-bare":
                    self._reply(429, {"error": "rate_limited"})
                elif kind == "503":
                    self._reply(503, b"<html>unavailable</html>")
                elif kind == "429":
                    self._reply(429, {"error": "rate_limited"}, {"Retry-After": arg or "1"})
                elif kind == "malformed":
                    self._reply(200, b"{not json")
                elif kind == "missing":
                    self._reply(200, {"token_type": "Bearer"})
                elif kind in ("401", "403"):
                    self._reply(int(kind), {"error": "unauthorized"})
                else:
                    raise ValueError(fault)
                return True

            def _refresh(self, token: str) -> None:
                with owner._lock:
                    owner.refresh_calls += 1
                    alive = token in owner.valid_refresh
                    if alive:
                        owner.valid_refresh.discard(token)
                        owner.spent.add(token)
                    elif token in owner.spent:
                        owner.reused.append(token)
                if not alive:
                    return self._reply(400, {"error": "invalid_grant",
                                             "error_description": "refresh token revoked"})
                record = {"rotated": time.time(), "answered": None, "consumed": token,
                          "client_read": None}
                with owner._lock:
                    owner.successful_refreshes += 1
                    owner.rotations.append(record)
                tokens = owner.issue()
                record["refresh_token"] = tokens["refresh_token"]
                if owner.on_rotate is not None:
                    owner.on_rotate()
                body: object = tokens
                if self.raw_expires is not None:
                    tokens.pop("expires_in")
                    body = (json.dumps(tokens)[:-1] + f', "expires_in": {self.raw_expires}}}').encode()
                if self.late:
                    time.sleep(self.late)
                try:
                    if self.trickle:
                        self._reply_trickling(body)
                    else:
                        self._reply(200, body)
                    self.wfile.flush()
                except OSError:  # the client is gone (killed): the token is lost on the wire
                    self.close_connection = True
                finally:
                    record["answered"] = time.time()
                    self.last_rotation = record
                    if owner.on_answer is not None:
                        owner.on_answer()

            def _device_authorization(self) -> None:
                n = next(owner._counter)
                login = DeviceLogin(f"dc-{n}-{secrets.token_hex(8)}", f"CODE-{n:04d}",
                                    deque(owner.device_script))
                with owner._lock:
                    owner.devices[login.device_code] = login
                self._reply(200, {
                    "user_code": login.user_code,
                    "device_code": login.device_code,
                    "verification_uri": f"{owner.url}/device",
                    "verification_uri_complete": f"{owner.url}/device?user_code={login.user_code}",
                    "expires_in": 600,
                    "interval": owner.device_interval,
                })

            def _device_token(self, device_code: str) -> None:
                login = owner.devices.get(device_code)
                if login is None:
                    return self._reply(400, {"error": "invalid_grant"})
                with owner._lock:
                    step = login.script.popleft() if len(login.script) > 1 else login.script[0]
                    login.polls.append(time.monotonic())
                if step == "ok":
                    return self._reply(200, owner.issue())
                errors = {"pending": "authorization_pending", "slow_down": "slow_down",
                          "expired": "expired_token", "denied": "access_denied"}
                self._reply(400, {"error": errors[step]})

        return Handler


def main() -> None:
    """Run standalone (for manual checks): prints the URL and a credential file to stdout."""
    import sys

    server = FakeKimiOAuth(lifetime=int(sys.argv[1]) if len(sys.argv) > 1 else 900).start()
    print(server.url, flush=True)
    try:
        server.thread.join()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
