"""A real HTTP server on loopback that plays Kimi's usage endpoint (`GET {base}/usages`).

It checks the Bearer token, records each request's headers, and serves whatever reply a test sets,
with faults on demand, so the client, the engine and the tray meet real HTTP.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BASE_PATH = "/coding/v1"


def iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def kimi_reply(now: float | None = None, week_used: int = 512, week_limit: int = 2048,
               window_remaining: int = 150, window_limit: int = 200,
               week_reset_in: float = 5 * 86400 + 600, window_reset_in: float = 2 * 3600 + 630,
               strings: bool = True) -> dict:
    """A reply shaped like the real one: numbers as strings, the 5-hour window without `used`."""
    now = time.time() if now is None else now

    def n(value: int) -> str | int:
        return str(value) if strings else value

    return {
        "user": {"membershipLevel": "LEVEL_INTERMEDIATE"},
        "usage": {"limit": n(week_limit), "used": n(week_used), "remaining": n(week_limit - week_used),
                  "resetTime": iso(now + week_reset_in)},
        "limits": [{"window": {"duration": 300, "timeUnit": "TIME_UNIT_MINUTE"},
                    "detail": {"limit": n(window_limit), "remaining": n(window_remaining),
                               "resetTime": iso(now + window_reset_in)}}],
    }


class FakeKimiUsage:
    def __init__(self) -> None:
        self.reply: dict | bytes = kimi_reply()
        self.rejected_tokens: set[str] = set()  # answered 401, as an expired access token is
        self.faults: deque[str] = deque()
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        # Shut down within 20 ms instead of serve_forever's 0.5 s poll: a test's teardown waits
        # for it, and mutation testing runs each test hundreds of times.
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)

    @property
    def url(self) -> str:
        """The base URL (what KIMI_CODE_BASE_URL holds)."""
        return f"http://127.0.0.1:{self.server.server_address[1]}{BASE_PATH}"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def start(self) -> FakeKimiUsage:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail_next(self, *faults: str) -> None:
        """Queue faults: '401', '403', '429:<retry-after>', '500', 'malformed', 'drop', 'slow:<s>',
        'trickle:<s>' (the headers at once, then one byte of the body every <s> seconds)."""
        with self._lock:
            self.faults.extend(faults)

    def fail_always(self, fault: str, count: int = 10_000) -> None:
        self.fail_next(*[fault] * count)

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def _handler(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

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

            def _trickle(self, every: float) -> None:
                """A reply that never times out a per-read timeout: a byte now and then, for minutes."""
                data = json.dumps(owner.reply).encode() + b" " * 600
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    for byte in data:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(every)
                except OSError:  # the client gave up: what we want
                    self.close_connection = True

            def do_GET(self) -> None:  # noqa: N802
                auth = self.headers.get("Authorization", "")
                with owner._lock:
                    owner.requests.append({"path": self.path, "headers": dict(self.headers),
                                           "time": time.time()})
                    fault = owner.faults.popleft() if owner.faults else None
                if fault:
                    kind, _, arg = fault.partition(":")
                    if kind == "slow":
                        time.sleep(float(arg or 2))
                    elif kind == "trickle":
                        return self._trickle(float(arg or 1))
                    elif kind == "drop":
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    elif kind == "429":
                        return self._reply(429, {"error": "rate_limited"}, {"Retry-After": arg or "1"})
                    elif kind in ("401", "403", "500"):
                        return self._reply(int(kind), {"error": "fault"})
                    elif kind == "malformed":
                        return self._reply(200, b"{not json")
                    else:
                        raise ValueError(fault)
                if self.path != BASE_PATH + "/usages":
                    return self._reply(404, {"error": "not_found"})
                token = auth.removeprefix("Bearer ").strip()
                if not auth.startswith("Bearer ") or not token or token in owner.rejected_tokens:
                    return self._reply(401, {"error": "unauthorized"})
                self._reply(200, owner.reply)

        return Handler
