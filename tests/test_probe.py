"""`kimi-tray doctor --probe` against a loopback stand-in for Kimi's coding API (never a real host)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from kimi_tray.cli.probe import API_KEY_FIX
from tests.conftest import kimi_file, read_json, run_cli, write_credentials
from tests.support.kimi_api_server import FakeKimiApi


@pytest.fixture
def token(home, oauth_server) -> str:
    tokens = oauth_server.issue()
    write_credentials(kimi_file(home), tokens, time.time() + 600)
    return tokens["access_token"]


@pytest.fixture
def bearer_only(token) -> Iterator[FakeKimiApi]:
    api = FakeKimiApi(token, accept=("bearer",)).start()
    yield api
    api.stop()


def probe_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if " probe " in line or line.startswith("probe ")]


def test_probe_reports_both_forms_and_what_it_means_for_openclaw(env, home, token, bearer_only):
    result = run_cli(["doctor", "--probe"], dict(env, KIMI_CODE_BASE_URL=bearer_only.base_url))
    assert result.returncode == 1, result.stdout
    lines = probe_lines(result.stdout)
    assert lines[0] == f"probe {bearer_only.base_url}: one minimal request (1 output token) each way"
    assert lines[1] == ("fail  probe OpenClaw's form: rejected (HTTP 401: invalid x-api-key) "
                        "[POST /messages, x-api-key (Anthropic dialect)]")
    assert lines[2].startswith("ok    probe Kimi CLI's form: accepted (HTTP 200) [POST /chat/completions")
    assert "not the way your OpenClaw sends it" in result.stdout and API_KEY_FIX in result.stdout

    messages, chat = bearer_only.requests
    assert messages["path"] == "/coding/v1/messages"
    assert messages["headers"]["x-api-key"] == token
    assert messages["headers"]["anthropic-version"] == "2023-06-01"
    assert "authorization" not in messages["headers"]
    assert not any(h.startswith("x-msh-") for h in messages["headers"])
    assert chat["path"] == "/coding/v1/chat/completions"
    assert chat["headers"]["authorization"] == f"Bearer {token}"
    device = (home / ".kimi" / "device_id").read_text().strip()
    assert chat["headers"]["x-msh-device-id"] == device
    assert chat["headers"]["user-agent"].startswith("kimi-tray/")
    assert messages["body"]["max_tokens"] == chat["body"]["max_tokens"] == 1
    assert token not in result.stdout + result.stderr


def test_probe_accepted_both_ways_says_openclaw_can_use_it(env, token) -> None:
    api = FakeKimiApi(token, accept=("bearer", "x-api-key")).start()
    try:
        result = run_cli(["doctor", "--probe"], dict(env, KIMI_CODE_BASE_URL=api.base_url))
    finally:
        api.stop()
    assert "ok    probe OpenClaw's form: accepted (HTTP 200)" in result.stdout
    assert "OpenClaw can use the login kimi-tray keeps alive" in result.stdout


def test_probe_follows_openclaws_dialect_switch(env, home, token, bearer_only) -> None:
    """A baseUrl in OpenClaw's config switches its Kimi provider to the OpenAI dialect."""
    config = home / ".openclaw" / "openclaw.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"models": {"providers": {"kimi": {"baseUrl": "https://x/"}}}}))
    result = run_cli(["doctor", "--probe"], dict(env, KIMI_CODE_BASE_URL=bearer_only.base_url))
    assert "ok    probe OpenClaw's form: accepted (HTTP 200) [POST /chat/completions, " \
           "Authorization: Bearer (OpenAI dialect" in result.stdout
    assert [r["path"] for r in bearer_only.requests] == ["/coding/v1/chat/completions"] * 2


def test_doctor_without_probe_sends_nothing(env, token, bearer_only) -> None:
    run_cli(["doctor"], dict(env, KIMI_CODE_BASE_URL=bearer_only.base_url))
    assert bearer_only.requests == []


def test_probe_refuses_plain_http_to_another_host(env, home, token) -> None:
    result = run_cli(["doctor", "--probe"], dict(env, KIMI_CODE_BASE_URL="http://example.com/v1"))
    assert result.returncode == 1
    assert ("fail  probe: The Kimi API base URL (usage_base_url, or KIMI_CODE_BASE_URL) "
            "http://example.com/v1 uses plain http" in result.stdout)
    assert read_json(kimi_file(home))["access_token"] == token
