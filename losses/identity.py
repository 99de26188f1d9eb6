"""A loss's identity: a sha256 of the code it runs, so a changed helper makes its rows stale.

The identity covers the module that defines the loss's class and every module it imports from its
own package, transitively (imports inside functions included): within `losses/` for the zoo, within
the plug-in's package, or its file's folder, for a plug-in. Each module enters as its normalised
source, the AST unparsed with docstrings left out (comments never reach the AST), so editing a
docstring or a comment keeps the identity, and any change to what runs changes it.

The registry's own modules (the declaration machinery below) are left out: they check and build
losses but compute no loss value, and a plug-in, which imports them from outside its own package,
never includes them either. Nothing is imported to compute an identity: files are read and parsed.
"""

from __future__ import annotations

import ast
import hashlib
import sysconfig
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CodeScope", "code_identity", "module_scope"]

# losses/ modules that declare, check and build losses rather than compute them (see above)
DECLARATION_MODULES = frozenset({"losses", "losses.registry", "losses.plugins", "losses.errors",
                                 "losses.identity"})


@dataclass(frozen=True)
class CodeScope:
    """Where a loss's own imports are looked for: under `root`, modules named `package.*` (a package)
    or any module whose file lies directly in `root` (a plain folder, package None)."""

    root: Path
    package: str | None


def module_scope(module_name: str, module_file: str | Path) -> CodeScope | None:
    """The scope of a loaded module: its top-level package, or its folder for a top-level module.

    A top-level module installed among the interpreter's own libraries has no folder of its own
    (site-packages holds every other package too), so its scope is None: the module alone.
    """
    path = Path(module_file).resolve()
    parts = module_name.split(".")
    if len(parts) > 1 or path.name == "__init__.py":
        depth = len(parts) - (0 if path.name == "__init__.py" else 1)
        return CodeScope(path.parents[depth], parts[0])
    shared = {Path(p).resolve() for key in ("purelib", "platlib", "stdlib", "platstdlib")
              if (p := sysconfig.get_paths().get(key))}
    return None if path.parent in shared else CodeScope(path.parent, None)


def _file_of(name: str, scope: CodeScope | None) -> Path | None:
    """The source file of module `name` if it lies in `scope`, else None (another package's, or absent)."""
    if scope is None or name in DECLARATION_MODULES:
        return None
    if scope.package is not None and name != scope.package and not name.startswith(scope.package + "."):
        return None
    base = scope.root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_of(name: str, path: Path) -> str:
    """The package a module's relative imports start from."""
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _imported(tree: ast.AST, name: str, path: Path) -> list[str]:
    """Every module name the tree imports, wherever the import statement stands (relative ones resolved).
    `from p import x` names p.x (if x is a module) and p; both are looked up, absent ones drop out."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(name, path).split(".") if _package_of(name, path) else []
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            if module:
                found.append(module)
            found.extend(f"{module}.{alias.name}" if module else alias.name for alias in node.names)
    return found


def _normalised(tree: ast.Module) -> str:
    """The module's code without docstrings: what runs, whatever the prose and comments say."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def code_identity(module_name: str, module_file: str | Path, scope: CodeScope | None) -> str:
    """sha256 over the normalised source of the module and of every module of `scope` it imports,
    transitively; each enters with its name, in name order."""
    sources: dict[str, str] = {}
    pending = [(module_name, Path(module_file).resolve())]
    while pending:
        name, path = pending.pop()
        if name in sources:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for imported in _imported(tree, name, path):
            found = _file_of(imported, scope)
            if found is not None and imported not in sources:
                pending.append((imported, found))
        sources[name] = _normalised(tree)
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    return digest.hexdigest()
