"""Let mutation testing reach the `kimi-tray` child processes that end-to-end tests start.

mutmut (3.x) picks the active mutant from the MUTANT_UNDER_TEST variable, and its mutated copy
of the code lives in `mutants/`, the directory the tests run from (so ROOT, and the PYTHONPATH
the `env` fixture builds from it, already point there). A child started with a fresh
environment would run the unmutated functions; `child_env()` passes the variable on.

Only to those children: `hide_from_children()` takes the variable out of this process's
environment (mutmut keeps its own copy), so a child that inherits everything, such as a copy
installed into a temporary virtualenv run from a temporary HOME, runs the original code instead
of failing to find mutmut's configuration.

While mutmut records which tests cover which functions (MUTANT_UNDER_TEST=stats), a child's
coverage would be lost with the child: a `sitecustomize` put first on its PYTHONPATH writes the
functions it called to a file at exit, and `merge_child_hits()` adds them to the test that ran it.
While mutmut runs a mutant, `record_kill()` notes which test failed first (mutmut runs a mutant's
tests fastest first and stops at the first failure) in `mutation-kills.tsv` next to mutmut's
files: `scripts/mutation_table.py --kills` counts the kills per test, which shows the slow tests
that kill nothing a faster test would not, i.e. those the mutation selection can leave out.
Without mutmut all of this does nothing.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

VARIABLE = "MUTANT_UNDER_TEST"
HOOK_DIR = Path(__file__).resolve().parent / "mutation_hook"
HITS_VARIABLE = "KIMI_TRAY_MUTATION_HITS"
ROOT_VARIABLE = "KIMI_TRAY_MUTATION_ROOT"
KILLS_FILE = "mutation-kills.tsv"
NOT_A_MUTANT = ("", "stats", "fail", "list_all_tests", "mutant_generation")


def active_mutant() -> str:
    """The mutant mutmut runs now ("" without mutmut; "stats" while it records coverage)."""
    value = os.environ.get(VARIABLE)
    if value is not None:
        return value
    trampoline = sys.modules.get("mutmut.mutation.trampoline")
    return str(trampoline.get_mutant_under_test()) if trampoline is not None else ""


def hide_from_children() -> None:
    if VARIABLE in os.environ and "mutmut.mutation.trampoline" in sys.modules:
        del os.environ[VARIABLE]


def hits_file() -> Path:
    return Path(tempfile.gettempdir()) / f"kimi-tray-mutation-hits-{os.getpid()}"


def child_env(root: Path) -> dict[str, str]:
    """The variables a child needs to run the active mutant (empty when mutmut is not running)."""
    mutant = active_mutant()
    if not mutant:
        return {}
    extra = {VARIABLE: mutant}
    if mutant == "stats":
        extra.update({
            "PYTHONPATH": f"{HOOK_DIR}{os.pathsep}{root}",
            HITS_VARIABLE: str(hits_file()),
            ROOT_VARIABLE: str(root),
        })
    return extra


def discard_child_hits() -> None:
    """Before a test: what a child wrote after the previous test's report belongs to no test."""
    if active_mutant() == "stats":
        with contextlib.suppress(FileNotFoundError):
            hits_file().unlink()


def merge_child_hits() -> None:
    """After a test: count the functions its children called as covered by it."""
    if active_mutant() != "stats":
        return
    path = hits_file()
    try:
        names = path.read_text(encoding="utf-8").split()
    except FileNotFoundError:
        return
    path.unlink()
    from mutmut.state import state  # only present where mutmut runs the tests

    state()._stats.update(names)


def record_kill(root: Path, nodeid: str, when: str) -> None:
    """A test failed: under a mutant, note it as the mutant's killer (one appended line)."""
    mutant = active_mutant()
    if mutant in NOT_A_MUTANT:
        return
    line = f"{mutant}\t{nodeid}\t{when}\n".encode()
    descriptor = os.open(root / KILLS_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(descriptor, line)  # one write with O_APPEND: parallel workers don't interleave
    finally:
        os.close(descriptor)
