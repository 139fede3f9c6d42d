"""The redaction filter: the last line of defence, so it must catch tokens in any shape."""

from __future__ import annotations

import logging
from pathlib import Path

from kimi_tray import logs


def test_registered_and_pattern_secrets_never_reach_the_log_file(tmp_path: Path) -> None:
    path = logs.setup_logging(tmp_path, to_stderr=False)
    logs.register_secret("opaque-refresh-token-value-123")
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    log = logging.getLogger("test")
    log.info("token %s", "opaque-refresh-token-value-123")
    log.info("Authorization: Bearer abcdefghijklmnop and %s", jwt)
    log.info('{"access_token": "zzzzzzzzzzzzzzzz"}')
    try:
        raise RuntimeError("boom opaque-refresh-token-value-123")
    except RuntimeError:
        log.exception("failed")
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = path.read_text()
    for secret in ("opaque-refresh-token-value-123", jwt, "abcdefghijklmnop", "zzzzzzzzzzzzzzzz"):
        assert secret not in text
    assert text.count("[redacted") >= 4
    logging.getLogger().handlers.clear()
