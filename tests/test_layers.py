"""The folders are the layers (README: Code layout): each may import only the layers below it.
Read from the source, so a new import that crosses a layer fails here, not in a review."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "kimi_tray"
ALLOWED = {
    "core": {"core"},
    "kimi": {"core", "kimi"},
    "stores": {"core", "kimi", "stores"},
    "platform": {"core", "stores", "platform"},  # stores: its atomic file writes
    "engine": {"core", "kimi", "stores", "platform", "engine"},  # no UI
    "ui": {"core", "kimi", "stores", "platform", "engine", "ui"},
    "cli": {"core", "kimi", "stores", "platform", "engine", "ui", "cli"},
}


def layers_imported(path: Path) -> set[str]:
    """The kimi_tray layers a module imports, at the top or inside a function, typing-only too."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
            [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        for name in names:
            parts = name.split(".")
            if parts[0] == "kimi_tray" and len(parts) > 1:
                found.add(parts[1])
    return found & set(ALLOWED)


def test_every_module_sits_in_a_layer() -> None:
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert loose == []
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(ALLOWED)


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_the_layers_below_it(layer: str) -> None:
    crossing = {str(p.relative_to(PACKAGE)): sorted(layers_imported(p) - ALLOWED[layer])
                for p in (PACKAGE / layer).rglob("*.py")}
    assert {k: v for k, v in crossing.items() if v} == {}
