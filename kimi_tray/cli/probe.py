"""`kimi-tray doctor --probe`: does Kimi accept our token the way OpenClaw sends it?

Offline nobody can know: OpenClaw's Kimi provider speaks the Anthropic dialect (`POST
{base}/messages`, the token in `x-api-key`, no `X-Msh-*` headers), while the Kimi CLI sends
`Authorization: Bearer` to `{base}/chat/completions` with its device headers. So this sends one
minimal request (one token of output) each way and reports what Kimi answered. Opt-in: it spends
two requests of the user's quota. The base URL follows KIMI_CODE_BASE_URL, as the Kimi CLI does.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kimi_tray import __version__
from kimi_tray.core.config import API_BASE_WHAT, Settings, check_https_url
from kimi_tray.kimi.httpclient import new_client
from kimi_tray.stores.openclaw import KIMI_PROVIDERS

if TYPE_CHECKING:  # only `doctor --probe` needs it (kimi_tray.kimi.httpclient says why)
    import httpx

MODEL = "kimi-for-coding"
# What OpenClaw's bundled Kimi provider sends (extensions/kimi-coding, provider-catalog in 2026.6.1)
OPENCLAW_USER_AGENT = "claude-code/0.1.0"
ANTHROPIC_VERSION = "2023-06-01"
API_KEY_FIX = "openclaw models auth paste-api-key --provider kimi"


@dataclass(frozen=True)
class Form:
    """One way of sending the token to Kimi."""

    who: str
    describe: str
    url: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass(frozen=True)
class Answer:
    form: Form
    accepted: bool
    status: int | None
    error: str  # Kimi's error text, or why there was no answer

    def line(self) -> str:
        if self.status is None:
            return f"{self.form.who}: no answer ({self.error})"
        verdict = "accepted" if self.accepted else "rejected"
        reason = f": {self.error}" if self.error and not self.accepted else ""
        return f"{self.form.who}: {verdict} (HTTP {self.status}{reason})"


def base_url(settings: Settings) -> str:
    """The same base the usage client uses (config `usage_base_url`, or KIMI_CODE_BASE_URL)."""
    url = settings.usage_base_url.rstrip("/")
    check_https_url(url, API_BASE_WHAT)
    return url


def openclaw_uses_openai_dialect(settings: Settings) -> bool:
    """OpenClaw switches its Kimi provider to the OpenAI dialect when its config sets a baseUrl."""
    path = Path(os.environ.get("OPENCLAW_CONFIG_PATH") or settings.openclaw_state_dir / "openclaw.json")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    providers = ((config.get("models") or {}).get("providers") or {}) if isinstance(config, dict) else {}
    return any(isinstance(p, dict) and p.get("baseUrl") for name, p in providers.items()
               if name in KIMI_PROVIDERS)


def forms(base: str, token: str, device: dict[str, str], openai_dialect: bool) -> list[Form]:
    body = {"model": MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
    if openai_dialect:
        openclaw = Form("OpenClaw's form", "POST /chat/completions, Authorization: Bearer "
                        "(OpenAI dialect: a baseUrl is set in OpenClaw's config)",
                        f"{base}/chat/completions",
                        {"Authorization": f"Bearer {token}", "User-Agent": OPENCLAW_USER_AGENT}, body)
    else:
        openclaw = Form("OpenClaw's form", "POST /messages, x-api-key (Anthropic dialect)",
                        f"{base}/messages",
                        {"x-api-key": token, "anthropic-version": ANTHROPIC_VERSION,
                         "User-Agent": OPENCLAW_USER_AGENT}, body)
    kimi_cli = Form("Kimi CLI's form", "POST /chat/completions, Authorization: Bearer, X-Msh-* "
                    "device headers", f"{base}/chat/completions",
                    {"Authorization": f"Bearer {token}", **device,
                     "User-Agent": f"kimi-tray/{__version__}"}, body)
    return [openclaw, kimi_cli]


def send(form: Form, token: str, client: httpx.Client) -> Answer:
    import httpx

    try:
        response = client.post(form.url, headers=form.headers, json=form.body)
    except httpx.HTTPError as exc:
        return Answer(form, False, None, f"could not reach {form.url}: {type(exc).__name__}")
    accepted = 200 <= response.status_code < 300
    return Answer(form, accepted, response.status_code,
                  "" if accepted else _error_text(response).replace(token, "<token>"))


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        error = error.get("message") or error.get("type")
    if not error and isinstance(body, dict):
        error = body.get("message") or body.get("detail")
    return str(error or "")[:200]


def meaning(openclaw: Answer, kimi_cli: Answer) -> str:
    if openclaw.accepted:
        return ("Kimi accepts the token the way your OpenClaw sends it: OpenClaw can use the login "
                "kimi-tray keeps alive.")
    if kimi_cli.accepted:
        return ("Kimi accepts this login's token from the Kimi CLI but not the way your OpenClaw "
                "sends it, so OpenClaw cannot use the Kimi Code login. Give OpenClaw a Kimi Code "
                f"API key instead: `{API_KEY_FIX}`.")
    if openclaw.status is None and kimi_cli.status is None:
        return f"Kimi could not be reached at {base_of(openclaw)}; check the network and probe again."
    return ("Kimi rejected the token both ways: run `kimi-tray renew` (or `kimi-tray login`) and "
            "probe again.")


def base_of(answer: Answer) -> str:
    return answer.form.url.rsplit("/", 1)[0]


def run_probe(settings: Settings, token: str, device: dict[str, str],
              transport: httpx.BaseTransport | None = None) -> tuple[list[Answer], str]:
    """One minimal request each way; the answers and what they mean for OpenClaw."""
    base = base_url(settings)
    with new_client(None, settings.http_timeout, transport) as client:
        answers = [send(form, token, client)
                   for form in forms(base, token, device, openclaw_uses_openai_dialect(settings))]
    return answers, meaning(answers[0], answers[1])
