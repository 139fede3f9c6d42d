"""Requests and exchanges the tests share: a refresh request to the loopback OAuth server, and an
exchange that answers from a script (for replies a real server would rarely send)."""

from __future__ import annotations

from typing import Any

from kimi_tray.core.config import KIMI_CLIENT_ID
from kimi_tray.kimi.exchange import ExchangeFailed, Reply, Request
from tests.support.oauth_server import FakeKimiOAuth


def refresh_request(server: FakeKimiOAuth, refresh_token: str, **fields: Any) -> Request:
    """What the OAuth client sends to refresh, with any other Request field (limits) given."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": KIMI_CLIENT_ID}
    return Request("POST", server.url + "/api/oauth/token", form=form, **fields)


class ScriptedExchange:
    """Keeps what was sent and answers each request with the next outcome of its script."""

    def __init__(self, *outcomes: Reply | ExchangeFailed) -> None:
        self.outcomes = list(outcomes)
        self.sent: list[Request] = []

    def send(self, request: Request) -> Reply:
        self.sent.append(request)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, ExchangeFailed):
            raise outcome
        return outcome

    def close(self) -> None:
        pass
