"""A loopback stand-in for Kimi's coding API that accepts the token in some forms only.

`accept` names the forms it takes: "bearer" (Authorization: Bearer on /chat/completions, the Kimi
CLI's way) and "x-api-key" (on /messages, the Anthropic dialect OpenClaw uses). It records every
request it saw (headers and JSON body) for the test to check.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeKimiApi:
    def __init__(self, token: str, accept: tuple[str, ...]) -> None:
        self.token = token
        self.accept = accept
        self.requests: list[dict] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        # Shut down within 20 ms instead of serve_forever's 0.5 s poll: a test's teardown waits
        # for it, and mutation testing runs each test hundreds of times.
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/coding/v1"

    def start(self) -> FakeKimiApi:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                headers = {k.lower(): v for k, v in self.headers.items()}
                api.requests.append({"path": self.path, "headers": headers, "body": body})
                if self.path == "/coding/v1/chat/completions":
                    ok = "bearer" in api.accept and headers.get("authorization") == f"Bearer {api.token}"
                    reply = ({"choices": [{"message": {"role": "assistant", "content": "H"}}]} if ok else
                             {"error": {"message": "The API Key appears to be invalid or may have "
                                                   "expired.", "type": "invalid_authentication_error"}})
                elif self.path == "/coding/v1/messages":
                    ok = "x-api-key" in api.accept and headers.get("x-api-key") == api.token
                    reply = ({"type": "message", "content": [{"type": "text", "text": "H"}]} if ok else
                             {"type": "error", "error": {"type": "authentication_error",
                                                         "message": "invalid x-api-key"}})
                else:
                    self.send_error(404)
                    return
                data = json.dumps(reply).encode()
                self.send_response(200 if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
