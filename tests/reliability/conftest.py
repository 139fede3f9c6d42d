"""The reliability suite: real kimi-tray processes against the loopback OAuth server.

Counts are sized for CI; `KIMI_TRAY_RELIABILITY_SCALE=10` multiplies them (benchmarks/reliability.py).
Every test hands what it saw to a witness that fails the test if any token the fake server issued
shows up in an output, a log, the state file, or the argv or environment of an `openclaw` call.
The figures (runs, faults, losses, leaks) are printed at the end and written to
.artifacts/reliability.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.support.oauth_server import FakeKimiOAuth

SCALE = max(1, int(os.environ.get("KIMI_TRAY_RELIABILITY_SCALE", "1")))
FIGURES: Counter[str] = Counter()
TOKEN_HOLDERS = ("kimi-code.json", "unsaved-token.json", "fake-store.json")


def scaled(count: int) -> int:
    return count * SCALE


class Witness:
    """Collects everything a user or another program could see, and the tokens that must not be in it."""

    def __init__(self) -> None:
        self.servers: list[FakeKimiOAuth] = []
        self.texts: list[tuple[str, str]] = []
        self.homes: list[Path] = []
        self.envs: list[dict[str, str]] = []

    def server(self, server: FakeKimiOAuth) -> FakeKimiOAuth:
        self.servers.append(server)
        return server

    def output(self, what: str, *results: subprocess.CompletedProcess[str] | str) -> None:
        for result in results:
            text = result if isinstance(result, str) else (result.stdout or "") + (result.stderr or "")
            self.texts.append((what, text))

    def watch(self, home: Path, env: dict[str, str]) -> None:
        self.homes.append(home)
        self.envs.append(env)
        env["FAKE_OPENCLAW_ENVIRON_LOG"] = str(home.parent / "openclaw-environ.log")

    def _gather(self) -> list[tuple[str, str]]:
        texts = list(self.texts)
        for home in self.homes:
            for path in home.rglob("*"):
                if path.is_file() and not path.is_symlink() and not path.name.startswith(TOKEN_HOLDERS):
                    texts.append((str(path), path.read_text(errors="replace")))
        for env in self.envs:
            for key in ("FAKE_OPENCLAW_LOG", "FAKE_OPENCLAW_ENVIRON_LOG"):  # argv and environ
                path = Path(env.get(key, "/nonexistent"))
                if path.is_file():
                    texts.append((str(path), path.read_text(errors="replace")))
        return texts

    def check(self) -> None:
        tokens = {t for server in self.servers for t in server.issued}
        texts = self._gather()
        FIGURES["leak check: texts scanned"] += len(texts)
        FIGURES["leak check: tokens searched"] += len(tokens)
        leaks = [(where, token[:6]) for where, text in texts for token in tokens if token in text]
        FIGURES["leak check: leaks"] += len(leaks)
        assert not leaks, f"tokens leaked into: {sorted({where for where, _ in leaks})}"


@pytest.fixture
def witness(oauth_server: FakeKimiOAuth, home: Path, env: dict[str, str]) -> Iterator[Witness]:
    seen = Witness()
    seen.server(oauth_server)
    seen.watch(home, env)
    yield seen
    seen.check()


def run(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kimi_tray", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=str(ROOT))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    if not FIGURES:
        return
    terminalreporter.section(f"reliability figures (scale {SCALE})")
    for key in sorted(FIGURES):
        terminalreporter.write_line(f"{key:<60} {FIGURES[key]}")
    out = ROOT / ".artifacts" / "reliability.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"scale": SCALE, **dict(sorted(FIGURES.items()))}, indent=2) + "\n")
