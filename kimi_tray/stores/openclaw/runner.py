"""Runs the `openclaw` CLI with our state dir; never puts a token in argv."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from kimi_tray.core.config import Settings
from kimi_tray.core.errors import OpenClawError

CLI_TIMEOUT = 90.0


class Runner:
    def __init__(self, settings: Settings) -> None:
        self.command = list(settings.openclaw_command)
        self.env = dict(os.environ)
        default_state = Path(self.env.get("HOME", str(Path.home()))) / ".openclaw"
        if settings.openclaw_state_dir != default_state:
            self.env["OPENCLAW_STATE_DIR"] = str(settings.openclaw_state_dir)
        self.env.setdefault("NO_COLOR", "1")

    def run(self, args: list[str], stdin: str | None = None,
            timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                self.command + args, input=stdin, capture_output=True, text=True,
                timeout=timeout, env=self.env, check=False,
            )
        except FileNotFoundError:
            raise OpenClawError(f"The openclaw command ({self.command[0]}) was not found.") from None
        except subprocess.TimeoutExpired:
            raise OpenClawError(f"openclaw {' '.join(args[:3])} did not finish in {timeout:g} s.") from None

    def json(self, args: list[str]) -> dict[str, Any]:
        """Run a `--json` command and return its object (OpenClaw may print notices before it)."""
        result = self.run(args)
        what = "openclaw " + " ".join(a for a in args if a != "--json")
        if result.returncode != 0:
            raise OpenClawError(f"{what} failed: " + last_line(result))
        try:
            value = json.loads(result.stdout[result.stdout.find("{"):])
        except ValueError:
            raise OpenClawError(f"{what} --json did not print JSON.") from None
        if not isinstance(value, dict):
            raise OpenClawError(f"{what} --json did not print a JSON object.")
        return value

    def version(self) -> str:
        """`OpenClaw 2026.6.1 (2e08f0f)`: fast (no plugins load), so asked on every sync."""
        result = self.run(["--version"], timeout=30)
        lines = [ln.strip() for ln in result.stdout.splitlines() if ln.strip()]
        if result.returncode != 0 or not lines:
            raise OpenClawError("openclaw --version failed: " + last_line(result))
        return lines[-1]

    def restart_gateway(self) -> tuple[bool, str]:
        try:
            result = self.run(["gateway", "restart"])
        except OpenClawError as exc:
            return False, str(exc)
        if result.returncode == 0:
            return True, "OpenClaw gateway restarted."
        return False, "openclaw gateway restart failed: " + last_line(result)


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    """Why an openclaw call failed: the reason its `--json` error object gives (the last line
    of that is a lone brace), else its last line of output."""
    try:
        error = json.loads(result.stdout[result.stdout.find("{"):]).get("error")
    except (ValueError, AttributeError):
        error = None
    message = error.get("message") if isinstance(error, dict) else None
    if isinstance(message, str) and message.strip():
        return message.strip()[:300]
    lines = [ln.strip() for ln in (result.stderr + "\n" + result.stdout).splitlines() if ln.strip()]
    return lines[-1][:200] if lines else f"exit code {result.returncode}"
