"""The status builder at its edges: each health boundary on both sides for several lifetimes, the
exact words a face shows, and every fact carried into the Status unchanged."""

from __future__ import annotations

import pytest

from kimi_tray.core.health import GatewayRestart, Health, LoginView, Status
from kimi_tray.core.usage import Usage
from kimi_tray.engine.recovery import Unsaved
from kimi_tray.engine.status import Facts, build_status, login_needed_reason, openclaw_words
from kimi_tray.stores.credentials import Credentials
from kimi_tray.stores.state import OpenClawView, fingerprint
from tests.support.oauth_server import make_jwt

NOW = 1_800_000_000.0


def creds(left: float, lifetime: float = 900, refresh: str = "rt-1", access: str = "at-1") -> Credentials:
    return Credentials(access, refresh, NOW + left, lifetime)


def test_a_status_from_bare_facts_has_the_plain_defaults() -> None:
    """What a face shows before anything happened: no file, nothing renewed, nothing failing."""
    status = build_status(Facts(NOW, "/k.json"))
    assert status == Status(Health.NEEDS_LOGIN, NOW, credentials_file="/k.json",
                            message="No Kimi credentials at /k.json.")
    assert status.openclaw == "unknown" and status.openclaw_detail == "" and status.openclaw_handoff is True


F, A, X, E = Health.FRESH, Health.AGING, Health.EXPIRING, Health.EXPIRED
HEALTH_EDGES = {  # lifetime: (seconds left, health) on both sides of each edge
    60: [(60, X), (30, X), (0.5, X), (0, E), (-1, E)],
    240: [(120, F), (119.5, X)],
    300: [(300, F), (150, F), (149.5, A), (120, A), (119.5, X), (0.5, X), (0, E)],
    900: [(450, F), (449.5, A), (120, A), (119.5, X), (0, E)],
    3600: [(1800, F), (1799.5, A), (120, A), (119.5, X), (0.01, X), (0, E)],
}


@pytest.mark.parametrize("lifetime", list(HEALTH_EDGES))
def test_health_edges_for_each_lifetime(lifetime: float) -> None:
    """Fresh down to half the lifetime, aging to 120 s, expiring to 0, then expired."""
    for left, health in HEALTH_EDGES[lifetime]:
        status = build_status(Facts(NOW, "/k.json", creds(left, lifetime)))
        assert status.health is health, (lifetime, left)
        assert status.expires_at == NOW + left and status.lifetime == lifetime
        assert status.message == ""


def test_facts_are_carried_into_the_status_unchanged() -> None:
    usage = Usage("Pro", NOW - 5)
    login = LoginView(2, "done", message="Logged in.")
    restart = GatewayRestart(4, running=False, ok=True, message="restarted")
    view = OpenClawView("error", "gateway exploded.", "cli", "fp", None, NOW - 3)
    status = build_status(Facts(NOW, "/k.json", creds(800), last_renewal=NOW - 100, openclaw=view,
                                renewing=True, failures=3, message="renewal failing: 503", usage=usage,
                                login=login, gateway_restart=restart, credentials_owner="kimi-code",
                                openclaw_handoff=False, openclaw_mode="cli", openclaw_target="the CLI",
                                last_forced_login_warning=NOW - 7))
    assert status == Status(Health.FRESH, NOW, "/k.json", NOW + 800, 900, NOW - 100, "renewal failing: 503",
                            "error", "gateway exploded.", None, True, False, 3, usage, "kimi-code", False,
                            "cli", "the CLI", login, restart, NOW - 7)


def test_a_running_login_shows_in_every_health() -> None:
    waiting = LoginView(1, "waiting", "C", "u", "u?c", NOW + 60)
    for facts in (Facts(NOW, "/k.json", login=waiting), Facts(NOW, "/k.json", creds(5), login=waiting),
                  Facts(NOW, "/k.json", load_error="bad", login=waiting)):
        status = build_status(facts)
        assert status.login_in_progress is True and status.login == waiting
    starting = build_status(Facts(NOW, "/k.json", login=LoginView(1, "starting")))
    assert starting.login_in_progress is True
    failed = build_status(Facts(NOW, "/k.json", login=LoginView(1, "failed")))
    assert failed.login_in_progress is False


def test_refresh_token_expiry_is_read_from_a_jwt_refresh_token() -> None:
    jwt = make_jwt({"sub": "u", "exp": NOW + 86400})
    status = build_status(Facts(NOW, "/k.json", creds(800, refresh=jwt)))
    assert status.refresh_token_expires_at == NOW + 86400
    assert build_status(Facts(NOW, "/k.json", creds(800))).refresh_token_expires_at is None


def test_an_unsaved_token_is_an_error_showing_its_own_expiry_and_lifetime() -> None:
    pending = Unsaved("at-2", "rt-2", NOW + 3000, 3600, "kimi-code", "Bearer", fingerprint("rt-1"),
                      "disk full")
    status = build_status(Facts(NOW, "/k.json", creds(10), pending=pending, load_error="bad", failures=2))
    assert status.health is Health.ERROR
    assert status.message == "new token not saved yet: disk full"
    assert status.expires_at == NOW + 3000 and status.lifetime == 3600 and status.failures == 2


def test_an_unreadable_file_is_an_error_with_its_reason_and_no_expiry() -> None:
    status = build_status(Facts(NOW, "/k.json", load_error="not JSON", message="ignored"))
    assert (status.health, status.message, status.expires_at, status.lifetime) == \
        (Health.ERROR, "not JSON", None, None)
    assert login_needed_reason(Facts(NOW, "/k.json", load_error="not JSON")) == ""


def test_needs_login_keeps_the_expiry_of_the_dead_token() -> None:
    status = build_status(Facts(NOW, "/k.json", creds(300, lifetime=600, refresh=""), message="other"))
    assert status.health is Health.NEEDS_LOGIN
    assert status.message == "The credential file holds no refresh token (logged out or revoked)."
    assert status.expires_at == NOW + 300 and status.lifetime == 600


@pytest.mark.parametrize(("dead_reason", "message"), [
    ("The server said: revoked.", "The server said: revoked."),
    ("", "The Kimi refresh token was rejected."),
])
def test_a_rejected_refresh_token_says_why(dead_reason: str, message: str) -> None:
    facts = Facts(NOW, "/k.json", creds(800), dead_refresh_fp=fingerprint("rt-1"), dead_reason=dead_reason)
    assert login_needed_reason(facts) == message
    assert build_status(facts).message == message


def test_no_dead_token_remembered_means_no_login_needed_even_for_an_empty_fingerprint() -> None:
    assert login_needed_reason(Facts(NOW, "/k.json", creds(800), dead_reason="old")) == ""
    assert login_needed_reason(Facts(NOW, "/k.json", creds(800), dead_refresh_fp=fingerprint("rt-0"))) == ""


@pytest.mark.parametrize(("view", "left", "words"), [
    (OpenClawView("in_sync", "", "cli", fingerprint("at-1"), NOW + 1, NOW), 800, ("in_sync", "")),
    (OpenClawView("in_sync", "", "cli", fingerprint("at-1"), NOW, NOW), 800,
     ("stale", "OpenClaw's Kimi token has expired.")),
    (OpenClawView("in_sync", "", "cli", fingerprint("at-1"), None, NOW), 800, ("in_sync", "")),
    (OpenClawView("in_sync", "", "cli", fingerprint("at-0"), NOW + 600, NOW), 800,
     ("stale", "OpenClaw holds an older Kimi token.")),
    (OpenClawView("error", "failed to paste.", "cli", fingerprint("at-0"), NOW - 5, NOW), 800,
     ("error", "failed to paste.")),
])
def test_openclaw_words_at_their_edges(view: OpenClawView, left: float, words: tuple[str, str]) -> None:
    facts = Facts(NOW, "/k.json", creds(left), openclaw=view)
    assert openclaw_words(facts) == words
    status = build_status(facts)
    assert (status.openclaw, status.openclaw_detail) == words


def test_openclaw_words_without_credentials_are_what_was_remembered() -> None:
    view = OpenClawView("in_sync", "pasted", "cli", fingerprint("at-0"), NOW - 5, NOW)
    assert openclaw_words(Facts(NOW, "/k.json", openclaw=view)) == ("in_sync", "pasted")


def test_a_rejected_token_without_a_remembered_reason_says_it_was_rejected() -> None:
    facts = Facts(NOW, "/k.json", creds(800), dead_refresh_fp=fingerprint("rt-1"))
    assert build_status(facts).message == "The Kimi refresh token was rejected."
