"""The HTTP clients' one factory: httpx is imported on the first request, not at start, and every
client shares one TLS context.

Importing httpx brings ssl, OpenSSL, http.client and email with it (about 12 MiB in a bare
interpreter), and each client of its own parses the whole certifi bundle into a new TLS context
(about 0.8 MiB each). A daemon whose token is fresh has no request to send for minutes; the
tray's OAuth and usage clients trust the same authorities.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl

    import httpx

_lock = threading.Lock()
_tls: ssl.SSLContext | None = None


def tls_context() -> ssl.SSLContext:
    """httpx's default verification (the certifi bundle, no SSL_CERT_* from the environment, as
    `trust_env=False` gives each client), built once for the whole process."""
    global _tls
    with _lock:
        if _tls is None:
            import httpx

            _tls = httpx.create_ssl_context(verify=True, trust_env=False)
        return _tls


def new_client(headers: dict[str, str] | None, timeout: float,
               transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """A client that never follows redirects nor reads proxies or certificates from the environment."""
    import httpx

    return httpx.Client(headers=headers or {}, timeout=timeout, transport=transport,
                        follow_redirects=False, trust_env=False, verify=tls_context())
