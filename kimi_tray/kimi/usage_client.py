"""GET {base}/usages with the access token we already hold: no other login, cookie or key."""

from __future__ import annotations

import json

from kimi_tray.core.config import API_BASE_WHAT, check_https_url
from kimi_tray.core.errors import KimiTrayError, TransientError
from kimi_tray.core.usage import Usage, UsageFormatError, parse_usages
from kimi_tray.kimi.exchange import Exchange, ExchangeFailed, HttpxExchange, Reply, Request
from kimi_tray.kimi.oauth import retry_after_seconds

USAGES_PATH = "/usages"
MAX_REPLY = 1 << 20  # the real reply is well under a kilobyte


class UsageUnauthorized(KimiTrayError):
    """The server refused the access token (401/403): refresh it, then try once more."""


class UsageClient:
    def __init__(self, base_url: str, headers: dict[str, str] | None = None, timeout: float = 15.0,
                 exchange: Exchange | None = None) -> None:
        check_https_url(base_url, API_BASE_WHAT)
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.headers = dict(headers or {})
        self._exchange = exchange or HttpxExchange()

    def close(self) -> None:
        self._exchange.close()

    def fetch(self, access_token: str, now: float, stale_after: float = 360.0) -> Usage:
        """One request, done within `timeout` in all (httpx's timeouts are per read, so a server
        sending a byte now and then would otherwise hold us for ever).
        Raises UsageUnauthorized, or TransientError (network, 429, 5xx, bad JSON, too slow)."""
        headers = {**self.headers, "Authorization": f"Bearer {access_token}", "Accept": "application/json"}
        request = Request("GET", self.base_url + USAGES_PATH, headers, connect_timeout=self.timeout,
                          read_timeout=self.timeout, whole_timeout=self.timeout, max_bytes=MAX_REPLY)
        try:
            response = self._exchange.send(request)
        except ExchangeFailed as exc:
            if exc.failure in ("connect_timeout", "read_timeout"):
                raise TransientError(f"the usage server at {self.base_url} did not answer in time") from None
            if exc.name == "ReplyTooLarge":
                raise TransientError("the usage server sent a reply far too large to be usage") from None
            raise TransientError(
                f"could not reach the usage server at {self.base_url} ({exc.name or exc.failure})") from None
        self._check_status(response)
        try:
            body = json.loads(response.body)
        except ValueError:
            raise TransientError("the usage server sent a reply that is not JSON") from None
        try:
            return parse_usages(body, stale_after=stale_after, fetched_at=now)
        except UsageFormatError as exc:
            raise TransientError(str(exc).rstrip(".")) from None

    @staticmethod
    def _check_status(response: Reply) -> None:
        status = response.status
        if status in (401, 403):
            raise UsageUnauthorized(f"the usage server refused the access token (HTTP {status})")
        if status == 429 or status >= 500:
            raise TransientError(f"the usage server is busy or failing (HTTP {status})",
                                 retry_after_seconds(response.retry_after))
        if status != 200:
            raise TransientError(f"the usage server answered HTTP {status}")
