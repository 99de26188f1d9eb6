"""The names `harness --help` lists, found without importing torch or Optuna (so help is instant).

Zoo losses are read off their modules' source (each `@register_loss("name", ...)`); installed
plug-ins from their entry points' metadata. A test holds these equal to the registry's own list.
"""

from __future__ import annotations

import ast
import importlib.util
from importlib import metadata
from pathlib import Path

__all__ = ["loss_names"]

LOSS_ENTRY_POINTS = "dml_harness.losses"  # the group losses.plugins reads


def _registered_in(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "register_loss" and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.append(node.args[0].value)
    return names


def loss_names() -> list[str]:
    """Zoo losses and installed plug-ins, sorted, as `losses.available()` gives them."""
    spec = importlib.util.find_spec("losses")  # locates the package without running it
    zoo = [name for path in Path(spec.origin).parent.glob("*.py") for name in _registered_in(path)] if spec else []
    plugins = [ep.name for ep in metadata.entry_points(group=LOSS_ENTRY_POINTS)]
    return sorted(set(zoo) | set(plugins))
