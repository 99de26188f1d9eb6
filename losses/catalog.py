"""Every loss the harness can reach, zoo and plug-ins alike, and the verbs the harness uses on them.

`info` finds a loss by name (the zoo's registry first, then an installed plug-in or an import
path), `build` instantiates it with checked hyperparameters, `suggest` samples its space through an
Optuna trial, and `identity` hashes the code it runs (losses.identity). The registry and the
plug-in loader below know nothing of this module, so the three import in one direction only.
"""

from __future__ import annotations

import json
import sys

import optuna
import torch
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from losses.errors import LossError
from losses.identity import code_identity, module_scope
from losses.plugins import LOSS_SCOPE, entry_point_names, resolve_external
from losses.registry import HARNESS_KEYS, LossInfo, check_value, constructor_params, zoo_info, zoo_names
from losses.sentence_transformers_adapter import adapter_identity, wrapped_class

__all__ = ["available", "build", "identity", "info", "search_space", "suggest", "summary"]


def available() -> list[str]:
    """Zoo losses and those installed packages offer (entry-point group `dml_harness.losses`), sorted."""
    return sorted(set(zoo_names()) | set(entry_point_names()))


def info(name: str) -> LossInfo:
    """The record of `name`: a zoo loss, an installed plug-in, or an import path `module:Class`."""
    return zoo_info(name) or resolve_external(name)


def identity(name: str) -> str:
    """sha256 of the code the loss runs: its module and the modules it imports from its own package
    (losses.identity); for a sentence-transformers class run through the adapter, the adapter's code and the
    wrapped class's package version and module (losses.sentence_transformers_adapter). A run computes it once
    and carries it in its key."""
    cls = info(name).cls
    if wrapped_class(cls) is not None:
        return adapter_identity(cls, _module_identity)
    return _module_identity(cls.__module__)


def _module_identity(module_name: str) -> str:
    module = sys.modules[module_name]
    # a plug-in loaded from a file names itself by its file's stem, within its folder (losses.plugins)
    stem, scope = getattr(module, LOSS_SCOPE, None) or (module.__name__, module_scope(module.__name__, module.__file__))
    return code_identity(stem, module.__file__, scope)


def summary(name: str) -> dict:
    """What `harness losses --json` prints of a loss: the space in Optuna's own JSON form."""
    record = info(name)
    return {"name": name, "class": f"{record.cls.__module__}:{record.cls.__qualname__}", "identity": identity(name),
            "space": {k: json.loads(optuna.distributions.distribution_to_json(v)) for k, v in record.space.items()},
            "defaults": record.defaults, "paper": record.paper, "description": record.description}


def search_space(name: str) -> dict[str, BaseDistribution]:
    """The searched hyperparameters of `name` (a copy: callers may not change the registry)."""
    return dict(info(name).space)


def build(name: str, *, embedding_dim: int, num_classes: int, **hparams: object) -> torch.nn.Module:
    """Instantiate loss `name`: defaults, overridden by `hparams`, each checked against the space.

    `embedding_dim` and `num_classes` go to constructors that declare them (proxy losses need
    them); harness keys such as loss_lr are validated and then left out, as the optimiser uses them.
    """
    record = info(name)
    for key, value in (("embedding_dim", embedding_dim), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise LossError(f"build('{name}'): {key}={value!r} is not accepted; "
                               "expected a positive integer")
    unknown = sorted(set(hparams) - set(record.accepted))
    if unknown and not record.accepted:
        raise LossError(f"loss '{name}' has no hyperparameter {unknown[0]}; it takes no hyperparameters")
    if unknown:
        accepted = ", ".join(record.accepted)
        raise LossError(f"loss '{name}' has no hyperparameter {unknown[0]}; accepted: {accepted}")
    values = {**record.defaults, **hparams}
    for key in list(values):
        if key in record.space:
            values[key] = check_value(name, key, values[key], record.space[key])
    kwargs = {k: v for k, v in values.items() if k not in HARNESS_KEYS}
    params = constructor_params(record.cls)
    if "embedding_dim" in params:
        kwargs["embedding_dim"] = embedding_dim
    if "num_classes" in params:
        kwargs["num_classes"] = num_classes
    return record.cls(**kwargs)


def suggest(trial: optuna.Trial, name: str) -> dict[str, object]:
    """Sample `name`'s space through the trial; the trial's parameter names are the hyperparameter names."""
    chosen: dict[str, object] = {}
    for key, dist in info(name).space.items():
        if isinstance(dist, FloatDistribution):
            chosen[key] = trial.suggest_float(key, dist.low, dist.high, step=dist.step, log=dist.log)
        elif isinstance(dist, IntDistribution):
            chosen[key] = trial.suggest_int(key, dist.low, dist.high, step=dist.step, log=dist.log)
        elif isinstance(dist, CategoricalDistribution):
            chosen[key] = trial.suggest_categorical(key, dist.choices)
        else:  # unreachable for registered losses; kept so a new distribution type fails loudly
            raise LossError(f"loss '{name}': hyperparameter {key} has an unsupported distribution "
                               f"{type(dist).__name__}; expected Float-, Int- or CategoricalDistribution")
    return chosen
