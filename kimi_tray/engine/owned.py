"""A debug hook on every attribute the engine's parts set, so a test can prove one thread owns them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MutationHook = Callable[[object, str], None]
_hook: MutationHook | None = None


def set_mutation_hook(hook: MutationHook | None) -> None:
    """Tests only: `hook(part, attribute)` runs on the thread that sets an engine attribute."""
    global _hook
    _hook = hook


def note_mutation(part: object, what: str) -> None:
    """For changes that are no attribute assignment (the state file saved, say)."""
    if _hook is not None:
        _hook(part, what)


class Owned:
    """Base of the engine's parts: every attribute set goes past the hook (when one is set)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if _hook is not None:
            _hook(self, name)
        object.__setattr__(self, name, value)
