"""GET {base}/usages with the access token we already hold: no other login, cookie or key."""

from __future__ import annotations

import httpx

from kimi_tray.config import API_BASE_WHAT, check_https_url
from kimi_tray.errors import KimiTrayError, TransientError
from kimi_tray.oauth import _retry_after
from kimi_tray.usage.model import Usage, UsageFormatError, parse_usages

USAGES_PATH = "/usages"


class UsageUnauthorized(KimiTrayError):
    """The server refused the access token (401/403): refresh it, then try once more."""


class UsageClient:
    def __init__(self, base_url: str, headers: dict[str, str] | None = None, timeout: float = 15.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        check_https_url(base_url, API_BASE_WHAT)
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(headers=headers or {}, timeout=timeout, transport=transport,
                                    follow_redirects=False, trust_env=False)

    def close(self) -> None:
        self._client.close()

    def fetch(self, access_token: str, now: float, stale_after: float = 360.0) -> Usage:
        """One request. Raises UsageUnauthorized, or TransientError (network, 429, 5xx, bad JSON)."""
        url = self.base_url + USAGES_PATH
        try:
            response = self._client.get(url, headers={"Authorization": f"Bearer {access_token}",
                                                      "Accept": "application/json"})
        except httpx.TimeoutException:
            raise TransientError(f"the usage server at {self.base_url} did not answer in time") from None
        except httpx.TransportError as exc:
            raise TransientError(
                f"could not reach the usage server at {self.base_url} ({type(exc).__name__})") from None
        status = response.status_code
        if status in (401, 403):
            raise UsageUnauthorized(f"the usage server refused the access token (HTTP {status})")
        if status == 429 or status >= 500:
            raise TransientError(f"the usage server is busy or failing (HTTP {status})",
                                 _retry_after(response.headers.get("Retry-After")))
        if status != 200:
            raise TransientError(f"the usage server answered HTTP {status}")
        try:
            body = response.json()
        except ValueError:
            raise TransientError("the usage server sent a reply that is not JSON") from None
        try:
            return parse_usages(body, stale_after=stale_after, fetched_at=now)
        except UsageFormatError as exc:
            raise TransientError(str(exc).rstrip(".")) from None
