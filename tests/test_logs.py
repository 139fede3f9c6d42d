"""The redaction filter: the last line of defence, so it must catch tokens in any shape."""

from __future__ import annotations

import logging
from pathlib import Path

from kimi_tray.core import logs


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


def test_a_token_in_use_is_never_dropped_from_the_redaction_set() -> None:
    """200 renewals, each registering a fresh pair while the long-lived first refresh token is
    still read back every time: every token seen within the last day stays masked."""
    logs._secrets.clear()
    start = 1000.0
    long_lived = "refresh-token-that-lives-for-weeks"
    for renewal in range(200):
        now = start + renewal * 450.0
        pair = (f"access-{renewal:04d}-abcdefgh", f"refresh-{renewal:04d}-abcdefgh")
        logs.register_secret(*pair, now=now)
        logs.register_secret(long_lived, now=now)
        assert "access" not in logs.redact(pair[0]) and "refresh" not in logs.redact(pair[1])
        assert long_lived not in logs.redact(f"read {long_lived}")
    # Seen 450 s * 199 ago (over a day): old enough to go; the recent ones are all still there.
    first = "access-0000-abcdefgh"
    assert logs.redact(first) == first
    recent = [f"access-{n:04d}-abcdefgh" for n in range(200 - 190, 200)]
    assert all(logs.redact(token) == "[redacted]" for token in recent)
    logs._secrets.clear()


def test_the_redaction_set_has_a_hard_cap() -> None:
    logs._secrets.clear()
    for n in range(logs.MAX_SECRETS + 10):
        logs.register_secret(f"secret-{n:06d}", now=5.0)
    assert len(logs._secrets) == logs.MAX_SECRETS
    assert "secret-000000" not in logs._secrets  # the least recently seen went first
    assert f"secret-{logs.MAX_SECRETS + 9:06d}" in logs._secrets
    logs._secrets.clear()


def test_the_log_rotates_past_its_size_keeping_three_private_old_files(tmp_path: Path) -> None:
    from kimi_tray.core.logs import PrivateRotatingFileHandler

    path = tmp_path / "kimi-tray.log"
    handler = PrivateRotatingFileHandler(path, max_bytes=200, backups=3)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("rotation-test")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for number in range(20):  # 20 lines of 50 bytes: 1000 bytes through a 200-byte log
            logger.warning("line %02d %s", number, "x" * 41)
    finally:
        logger.removeHandler(handler)
        handler.close()
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["kimi-tray.log", "kimi-tray.log.1", "kimi-tray.log.2",
                                       "kimi-tray.log.3"]
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in files)
    assert all(f.stat().st_size <= 200 for f in files)
    kept = [line for f in reversed(files) for line in f.read_text().splitlines()]
    assert [int(line.split()[1]) for line in kept] == list(range(20 - len(kept), 20))  # none cut
    assert len(kept) == 16  # four files of four whole lines: the oldest four are gone
