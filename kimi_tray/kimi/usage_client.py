"""GET {base}/usages with the access token we already hold: no other login, cookie or key."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from kimi_tray.core.config import API_BASE_WHAT, check_https_url
from kimi_tray.core.errors import KimiTrayError, TransientError
from kimi_tray.core.usage import Usage, UsageFormatError, parse_usages
from kimi_tray.kimi.httpclient import new_client
from kimi_tray.kimi.oauth import retry_after_seconds

if TYPE_CHECKING:  # imported when the client is made (kimi_tray.kimi.httpclient says why)
    import httpx

USAGES_PATH = "/usages"
MAX_REPLY = 1 << 20  # the real reply is well under a kilobyte


class UsageUnauthorized(KimiTrayError):
    """The server refused the access token (401/403): refresh it, then try once more."""


class UsageClient:
    def __init__(self, base_url: str, headers: dict[str, str] | None = None, timeout: float = 15.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        check_https_url(base_url, API_BASE_WHAT)
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._client = new_client(headers, timeout, transport)

    def close(self) -> None:
        self._client.close()

    def fetch(self, access_token: str, now: float, stale_after: float = 360.0) -> Usage:
        """One request, done within `timeout` in all (httpx's timeouts are per read, so a server
        sending a byte now and then would otherwise hold us for ever).
        Raises UsageUnauthorized, or TransientError (network, 429, 5xx, bad JSON, too slow)."""
        import httpx

        url = self.base_url + USAGES_PATH
        deadline = time.monotonic() + self.timeout
        too_slow = TransientError(f"the usage server at {self.base_url} did not answer in time")
        try:
            with self._client.stream("GET", url, headers={"Authorization": f"Bearer {access_token}",
                                                          "Accept": "application/json"}) as response:
                self._check_status(response)
                data = bytearray()
                for chunk in response.iter_bytes():
                    data += chunk
                    if time.monotonic() > deadline:
                        raise too_slow
                    if len(data) > MAX_REPLY:
                        raise TransientError("the usage server sent a reply far too large to be usage")
        except httpx.TimeoutException:
            raise too_slow from None
        except httpx.TransportError as exc:
            raise TransientError(
                f"could not reach the usage server at {self.base_url} ({type(exc).__name__})") from None
        try:
            body = json.loads(bytes(data))
        except ValueError:
            raise TransientError("the usage server sent a reply that is not JSON") from None
        try:
            return parse_usages(body, stale_after=stale_after, fetched_at=now)
        except UsageFormatError as exc:
            raise TransientError(str(exc).rstrip(".")) from None

    @staticmethod
    def _check_status(response: httpx.Response) -> None:
        status = response.status_code
        if status in (401, 403):
            raise UsageUnauthorized(f"the usage server refused the access token (HTTP {status})")
        if status == 429 or status >= 500:
            raise TransientError(f"the usage server is busy or failing (HTTP {status})",
                                 retry_after_seconds(response.headers.get("Retry-After")))
        if status != 200:
            raise TransientError(f"the usage server answered HTTP {status}")
