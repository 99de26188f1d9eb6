"""Losses from outside the zoo: an import path, a file path, or an installed package's entry point.

    LOSS=my_pkg.my_module:MyLoss     a class in an importable module
    LOSS=path/to/file.py:MyLoss      a class in a Python file
    LOSS=my_loss                     an entry point in the group `dml_harness.losses` of an installed package

The class declares its search space with `losses.declare_loss(...)`, the same declaration the zoo's
`register_loss` takes, so the same checks apply (unknown keyword, out-of-range value, loss not finite).
A sentence-transformers loss class (`sentence_transformers.losses:BatchHardTripletLoss`) needs no declaration:
losses.sentence_transformers_adapter runs it on the harness's embeddings in its zoo counterpart's space.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import importlib.util
import sys
from importlib import metadata
from pathlib import Path

from losses.errors import LossError
from losses.identity import CodeScope
from losses.registry import LossInfo, zoo_names
from losses.sentence_transformers_adapter import adapt, is_sentence_transformers_style

__all__ = ["ENTRY_POINT_GROUP", "LOSS_SCOPE", "entry_point_names", "resolve_external"]

ENTRY_POINT_GROUP = "dml_harness.losses"
# set on a module loaded from a file: (its name for the identity, the folder its own imports come from)
LOSS_SCOPE = "__loss_scope__"


def entry_point_names() -> list[str]:
    return sorted({ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)})


def _known() -> str:
    return ", ".join(sorted(set(zoo_names()) | set(entry_point_names())))


def resolve_external(spec: object) -> LossInfo:
    """The declared record of an external loss, named by `spec` exactly as the user wrote it."""
    if not isinstance(spec, str) or not spec:
        raise LossError(f"unknown loss {spec!r}; known losses: " + _known())
    if ":" in spec:
        return dataclasses.replace(_declared(_load_class(spec), spec), name=spec)
    matches = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == spec]
    if not matches:
        raise LossError(f"unknown loss {spec!r}; known losses: " + _known()
                           + " (or give an import path such as my_pkg.my_module:MyLoss or path/to/file.py:MyLoss)")
    try:
        cls = matches[0].load()
    except Exception as error:  # a broken plug-in package: name it, whatever it raised
        raise LossError(f"loss '{spec}': cannot load entry point {matches[0].value}: {error}") from error
    return dataclasses.replace(_declared(cls, spec), name=spec)


def _declared(cls: object, spec: str) -> LossInfo:
    """The class's own declaration; an ST-style class (sentence-transformers') runs through the adapter."""
    if is_sentence_transformers_style(cls):
        return adapt(cls, spec)
    info = getattr(cls, "__loss_info__", None)
    if not isinstance(info, LossInfo):
        raise LossError(f"loss '{spec}': {cls!r} declares no search space; decorate the class with "
                           "@losses.declare_loss(space=..., defaults=..., description=..., paper=...)")
    return info


@functools.cache
def _load_class(spec: str) -> type:
    """Import `module:Class` or `file.py:Class` once per process (a cached import keeps one class object)."""
    target, _, class_name = spec.rpartition(":")
    if not target or not class_name:
        raise LossError(f"loss '{spec}': expected module:Class or path/to/file.py:Class")
    if target.endswith(".py"):
        module = _import_file(Path(target), spec)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as error:
            raise LossError(f"loss '{spec}': cannot import module '{target}': {error}") from error
    cls = getattr(module, class_name, None)
    if cls is None:
        found = sorted(n for n, v in vars(module).items() if isinstance(v, type) and hasattr(v, "__loss_info__"))
        raise LossError(f"loss '{spec}': module '{target}' has no class {class_name}; declared losses there: "
                           + (", ".join(found) or "none"))
    return cls


def _import_file(path: Path, spec: str):
    """Run the file as a module of a unique name; modules beside it import as they would from its folder."""
    path = path.resolve()
    if not path.is_file():
        raise LossError(f"loss '{spec}': file not found: {path}")
    # a name unique to the file's location, so two files called losses.py never collide
    name = f"dml_harness_plugin_{hashlib.sha256(str(path).encode()).hexdigest()[:10]}_{path.stem}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    setattr(module, LOSS_SCOPE, (path.stem, CodeScope(path.parent, None)))
    if str(path.parent) not in sys.path:  # last, so a helper never shadows an installed package
        sys.path.append(str(path.parent))
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except LossError:
        raise
    except Exception as error:  # the user's file failed to run: name it and what it raised
        del sys.modules[name]
        raise LossError(f"loss '{spec}': {path} failed to import: {type(error).__name__}: {error}") from error
    return module
