"""kimi-tray names itself honestly to Kimi's OAuth server, with the Kimi CLI's device headers."""

from __future__ import annotations

import time

from kimi_tray import __version__
from tests.conftest import kimi_file, run_cli, write_credentials


def test_renew_says_kimi_tray_and_keeps_the_kimi_cli_device(env, home, oauth_server) -> None:
    device = home / ".kimi" / "device_id"
    device.parent.mkdir(parents=True)
    device.write_text("0123456789abcdef0123456789abcdef")
    write_credentials(kimi_file(home), oauth_server.issue(), time.time() + 100)
    assert run_cli(["renew"], env).returncode == 0
    headers = {k.lower(): v for k, v in oauth_server.requests[-1]["headers"].items()}
    assert headers["user-agent"] == f"kimi-tray/{__version__}"
    assert headers["x-msh-device-id"] == "0123456789abcdef0123456789abcdef", "the same device"
    assert headers["x-msh-platform"] == "kimi_cli"
    assert "x-msh-version" not in headers, "no made-up Kimi CLI version"
