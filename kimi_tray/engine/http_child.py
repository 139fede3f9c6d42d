"""HTTP requests in a short-lived child process, so the daemon and the tray never hold httpx.

httpx with ssl and certifi takes a Python process from about 11 to about 26 MiB, for a request
every seven minutes. A child that sends one request and exits keeps that memory out of the
long-running process; the start costs about a fifth of a second of CPU per request.

The child never drops a rotated token: the parent acknowledges the reply it read, and a child
whose parent died first (killed, or quit while the request was out) writes a refresh answer to
the recovery file, which the next start puts in place. A child whose parent died before the
request was sent sends nothing. The request (tokens included) goes over stdin, never argv.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kimi_tray.kimi.exchange import FAILURES, Exchange, ExchangeFailed, HttpxExchange, Reply, Request

log = logging.getLogger(__name__)

ACK = b"ok\n"
NO_ANSWER = "its request process ended without an answer"
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


def child_exchanges(state_dir: Path) -> Callable[[], Exchange]:
    """What the long-running faces use: child processes, except in the one-file build (which
    would unpack itself again for every child) where requests stay in the process."""
    if getattr(sys, "frozen", False):
        return HttpxExchange
    from kimi_tray.engine.recovery import RECOVERY_FILE

    return lambda: ChildExchange(state_dir / RECOVERY_FILE)


class ChildExchange:
    def __init__(self, recovery_file: Path | None = None) -> None:
        """recovery_file: where a child whose parent died keeps a refresh answer."""
        self.recovery_file = recovery_file
        self._fallback: HttpxExchange | None = None

    def close(self) -> None:
        if self._fallback is not None:
            self._fallback.close()

    def send(self, request: Request) -> Reply:
        message = {"parent": os.getpid(), "request": request.to_json(),
                   "recovery_file": None if self.recovery_file is None else str(self.recovery_file)}
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (PACKAGE_ROOT, os.environ.get("PYTHONPATH", "")) if p)}
        try:
            child = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        except OSError as exc:  # no interpreter to start: send it from here rather than not at all
            log.warning("Could not start a process for an HTTP request (%s); sending it from this one.",
                        exc.strerror or exc)
            if self._fallback is None:
                self._fallback = HttpxExchange()
            return self._fallback.send(request)
        assert child.stdin is not None and child.stdout is not None
        try:
            try:
                child.stdin.write(json.dumps(message).encode() + b"\n")
                child.stdin.flush()
            except OSError:
                raise ExchangeFailed("broken", NO_ANSWER) from None
            line = child.stdout.readline()
            with contextlib.suppress(OSError):
                if line:
                    child.stdin.write(ACK)
                    child.stdin.flush()
        finally:
            with contextlib.suppress(OSError):
                child.stdin.close()
            child.stdout.close()
            child.wait()
        return _reply_from(line)


def _reply_from(line: bytes) -> Reply:
    try:
        answer = json.loads(line)
        if "failed" in answer:
            failure = answer["failed"]
            raise ExchangeFailed(failure if failure in FAILURES else "broken", str(answer.get("name", "")))
        return Reply(int(answer["status"]), base64.b64decode(answer["body"]), answer.get("retry_after"))
    except (ValueError, TypeError, KeyError):  # it died, or printed something else
        raise ExchangeFailed("broken", NO_ANSWER) from None


# ----------------------------------------------------------------------------- the child
def main() -> int:
    message = json.loads(sys.stdin.buffer.readline())
    if os.getppid() != message["parent"]:
        return 0  # the parent is gone: nobody would read the answer
    request = Request.from_json(message["request"])
    reply: Reply | None = None
    answer: dict[str, Any]
    try:
        reply = HttpxExchange().send(request)
        answer = {"status": reply.status, "body": base64.b64encode(reply.body).decode(),
                  "retry_after": reply.retry_after}
    except ExchangeFailed as exc:
        answer = {"failed": exc.failure, "name": exc.name}
    try:
        sys.stdout.buffer.write(json.dumps(answer).encode() + b"\n")
        sys.stdout.buffer.flush()
        acknowledged = sys.stdin.buffer.readline() == ACK
    except OSError:
        acknowledged = False
    if not acknowledged and reply is not None and message.get("recovery_file"):
        keep_orphaned_refresh(request, reply, Path(message["recovery_file"]))
    return 0


def keep_orphaned_refresh(request: Request, reply: Reply, recovery_file: Path) -> None:
    """The parent died before it read a refresh answer: keep the rotated token where its next
    start looks first (it is put in place only over the token it replaced)."""
    form = request.form or {}
    if form.get("grant_type") != "refresh_token" or reply.status != 200:
        return
    from kimi_tray.core.errors import KimiTrayError
    from kimi_tray.engine.recovery import Unsaved, write_recovery
    from kimi_tray.kimi.oauth import token_from
    from kimi_tray.stores.state import fingerprint

    now = time.time()
    try:
        token = token_from(json.loads(reply.body), now)
    except (KimiTrayError, ValueError):
        return
    write_recovery(recovery_file, Unsaved(
        token.access_token, token.refresh_token, now + token.expires_in, token.expires_in, token.scope,
        token.token_type, fingerprint(form.get("refresh_token", "")),
        "kimi-tray stopped before it could save the server's answer."))


if __name__ == "__main__":
    sys.exit(main())
