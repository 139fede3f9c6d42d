"""One HTTP request and its whole reply, as plain data, so where it runs can be chosen.

The OAuth and usage clients build a `Request` and read a `Reply`; an `Exchange` carries it out.
`HttpxExchange` does so in this process. The daemon and the tray use the engine's child-process
exchange instead, so httpx, ssl and certifi (about 15 MiB) are never resident between requests.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from kimi_tray.kimi.httpclient import new_client

if TYPE_CHECKING:
    import httpx

# What went wrong on the way, in the words the clients turn into their own errors:
#   connect_timeout  no connection in time (nothing was sent)
#   read_timeout     connected, no (whole) answer in time (the request may have been handled)
#   unreachable      refused, no route, bad name (nothing was sent)
#   broken           the connection broke midway, or the reply was too large (may have been handled)
Failure = Literal["connect_timeout", "read_timeout", "unreachable", "broken"]
FAILURES: tuple[Failure, ...] = ("connect_timeout", "read_timeout", "unreachable", "broken")


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    form: dict[str, str] | None = None
    connect_timeout: float = 15.0
    read_timeout: float = 15.0  # per read, as httpx counts it
    whole_timeout: float | None = None  # the whole reply, however slowly it trickles in
    max_bytes: int = 1 << 20

    def __repr__(self) -> str:  # headers and form carry tokens
        return f"Request({self.method} {self.url})"

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "url": self.url, "headers": self.headers, "form": self.form,
                "connect_timeout": self.connect_timeout, "read_timeout": self.read_timeout,
                "whole_timeout": self.whole_timeout, "max_bytes": self.max_bytes}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Request:
        form = data["form"]
        return cls(method=str(data["method"]), url=str(data["url"]), headers=_strings(data["headers"]),
                   form=None if form is None else _strings(form),
                   connect_timeout=float(data["connect_timeout"]), read_timeout=float(data["read_timeout"]),
                   whole_timeout=None if data["whole_timeout"] is None else float(data["whole_timeout"]),
                   max_bytes=int(data["max_bytes"]))


def _strings(mapping: Any) -> dict[str, str]:
    return {str(key): str(value) for key, value in dict(mapping).items()}


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    retry_after: str | None = None

    def __repr__(self) -> str:  # the body carries tokens
        return f"Reply(status={self.status})"


class ExchangeFailed(Exception):
    """The request did not get a whole reply; `failure` says how (see FAILURES), `name` what broke."""

    def __init__(self, failure: Failure, name: str = "") -> None:
        super().__init__(failure, name)
        self.failure: Failure = failure
        self.name = name


class Exchange(Protocol):
    def send(self, request: Request) -> Reply: ...

    def close(self) -> None: ...


class HttpxExchange:
    """In this process, with one httpx client made at the first request (httpx loads then)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = new_client(None, 15.0)
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()

    def send(self, request: Request) -> Reply:
        import httpx

        timeout = httpx.Timeout(request.read_timeout, connect=request.connect_timeout)
        deadline = None if request.whole_timeout is None else time.monotonic() + request.whole_timeout
        try:
            with self._http().stream(request.method, request.url, headers=request.headers,
                                     data=request.form, timeout=timeout) as response:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if deadline is not None and time.monotonic() > deadline:
                        raise ExchangeFailed("read_timeout")
                    if len(body) > request.max_bytes:
                        raise ExchangeFailed("broken", "ReplyTooLarge")
                return Reply(response.status_code, bytes(body), response.headers.get("Retry-After"))
        except (httpx.ConnectTimeout, httpx.PoolTimeout):
            raise ExchangeFailed("connect_timeout") from None
        except httpx.TimeoutException:
            raise ExchangeFailed("read_timeout") from None
        except (httpx.ConnectError, httpx.UnsupportedProtocol) as exc:
            raise ExchangeFailed("unreachable", type(exc).__name__) from None
        except httpx.TransportError as exc:
            raise ExchangeFailed("broken", type(exc).__name__) from None
