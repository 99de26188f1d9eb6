"""The loss registry: one place that knows every loss, its searched space and its defaults.

The harness never imports a loss class directly; it asks the registry to `build` one by name, to
list the `search_space` that Optuna explores, and to `suggest` a configuration for a trial. Keeping
the space next to the class (in `register_loss`) means a loss and the ranges it is tuned over are
reviewed together, and the harness can hash the space into a study's identity.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import torch
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from losses.errors import LossError

__all__ = [
    "HARNESS_KEYS",
    "RESERVED_NAMES",
    "LossInfo",
    "check_value",
    "constructor_params",
    "declare_loss",
    "describe",
    "register_loss",
    "zoo_info",
    "zoo_names",
]

# "none" names the untrained baseline in results tables, so no loss may take it.
RESERVED_NAMES = frozenset({"none"})
# Searched hyperparameters that the harness consumes itself (the learning rate of a loss's own
# parameters, see harness/train.py) rather than the loss constructor: `build` validates them
# against the space but never passes them on.
HARNESS_KEYS = frozenset({"loss_lr"})
# Passed by `build` to constructors that name them; never hyperparameters.
_CONTEXT_KEYS = ("embedding_dim", "num_classes")

ModuleT = TypeVar("ModuleT", bound=type[torch.nn.Module])


@dataclass(frozen=True)
class LossInfo:
    """Everything the harness needs to know about a registered loss."""

    name: str
    cls: type[torch.nn.Module]
    description: str
    paper: str
    space: dict[str, BaseDistribution]
    defaults: dict[str, object]

    @property
    def accepted(self) -> list[str]:
        """The hyperparameter keywords `build` accepts, sorted."""
        return sorted(set(self.defaults) | set(self.space))


_REGISTRY: dict[str, LossInfo] = {}


def describe(dist: BaseDistribution) -> str:
    """A distribution's accepted values, for error messages and listings: `[0.01, 1.0] lin`."""
    if isinstance(dist, FloatDistribution | IntDistribution):
        text = f"[{dist.low}, {dist.high}]"
        if dist.step not in (None, 1):
            text += f" in steps of {dist.step}"
        if isinstance(dist, FloatDistribution) or dist.log:
            text += " log" if dist.log else " lin"
        return text
    if isinstance(dist, CategoricalDistribution):
        return "one of " + ", ".join(repr(c) for c in dist.choices)
    return repr(dist)


def check_value(loss: str, key: str, value: object, dist: BaseDistribution) -> object:
    """Return `value` in the type the distribution implies, or raise naming what is accepted."""
    where = f"loss '{loss}': hyperparameter {key}={value!r}"
    if isinstance(dist, CategoricalDistribution):
        if value not in dist.choices:
            raise LossError(f"{where} is not accepted; expected {describe(dist)}")
        return value
    if isinstance(dist, IntDistribution):
        # bool is an int subclass, but True as a number of anything is a caller's mistake
        if isinstance(value, bool) or not isinstance(value, int):
            raise LossError(f"{where} is not an integer; expected an integer in {describe(dist)}")
        if not dist.low <= value <= dist.high or (value - dist.low) % dist.step:
            raise LossError(f"{where} is out of range; expected {describe(dist)}")
        return value
    if isinstance(dist, FloatDistribution):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise LossError(f"{where} is not a number; expected a float in {describe(dist)}")
        value = float(value)
        # written so that NaN fails the check too
        if not dist.low <= value <= dist.high:
            raise LossError(f"{where} is out of range; expected {describe(dist)}")
        if dist.step is not None:
            steps = (value - dist.low) / dist.step
            if not math.isclose(steps, round(steps), abs_tol=1e-8):
                raise LossError(f"{where} is out of range; expected {describe(dist)}")
        return value
    raise LossError(f"loss '{loss}': hyperparameter {key} has an unsupported distribution "
                       f"{type(dist).__name__}; expected Float-, Int- or CategoricalDistribution")


def constructor_params(cls: type) -> Mapping[str, inspect.Parameter]:
    params = dict(inspect.signature(cls).parameters)
    return {k: p for k, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _checked_info(name: str, cls: type, space: Mapping[str, BaseDistribution], defaults: Mapping[str, object],
                  description: str, paper: str) -> LossInfo:
    """Checked here rather than at build time, so a mistake in a loss module fails on import."""
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise LossError(f"loss '{name}': {cls!r} is not accepted; expected a torch.nn.Module subclass")
    if not description.strip() or "\n" in description.strip():
        raise LossError(f"loss '{name}': description {description!r} is not accepted; "
                           "expected one line")
    if not paper.strip():
        raise LossError(f"loss '{name}': paper is empty; expected a citation")

    params = constructor_params(cls)
    for key, dist in space.items():
        if not isinstance(dist, FloatDistribution | IntDistribution | CategoricalDistribution):
            raise LossError(f"loss '{name}': space[{key!r}]={dist!r} is not accepted; expected "
                               "an optuna Float-, Int- or CategoricalDistribution")
    for key in set(space) | set(defaults):
        if key in _CONTEXT_KEYS:
            raise LossError(f"loss '{name}': {key} is passed by build, not a hyperparameter; "
                               "remove it from space and defaults")
        if key not in params and key not in HARNESS_KEYS:
            raise LossError(f"loss '{name}': hyperparameter {key} is not an argument of "
                               f"{cls.__qualname__}; accepted: " + ", ".join(sorted(params)))
    missing_defaults = sorted(set(space) - set(defaults) - HARNESS_KEYS)
    if missing_defaults:
        raise LossError(f"loss '{name}': searched hyperparameters without a default: "
                           + ", ".join(missing_defaults))
    required = sorted(k for k, p in params.items()
                      if p.default is p.empty and k not in defaults and k not in _CONTEXT_KEYS)
    if required:
        raise LossError(f"loss '{name}': constructor arguments without a default: "
                           + ", ".join(required) + "; give them in defaults")
    checked = dict(defaults)
    for key, value in defaults.items():
        if key in space:
            checked[key] = check_value(name, key, value, space[key])

    return LossInfo(name=name, cls=cls, description=description.strip(), paper=paper.strip(),
                    space=dict(space), defaults=checked)


def declare_loss(*, space: Mapping[str, BaseDistribution], defaults: Mapping[str, object],
                 description: str, paper: str) -> Callable[[ModuleT], ModuleT]:
    """Class decorator for a loss outside the zoo: the same declaration as `register_loss`, no name.

    The harness reaches such a class by import path (`my_pkg.my_module:MyLoss`, `path/file.py:MyLoss`)
    or through the `dml_harness.losses` entry-point group; the checks are the same as the zoo's.
    """

    def decorator(cls: ModuleT) -> ModuleT:
        cls.__loss_info__ = _checked_info(f"{cls.__module__}:{cls.__qualname__}", cls, space, defaults,
                                          description, paper)
        return cls

    return decorator


def register_loss(name: str, *, space: Mapping[str, BaseDistribution], defaults: Mapping[str, object],
                  description: str, paper: str) -> Callable[[ModuleT], ModuleT]:
    """Class decorator that registers a loss of the zoo under `name`.

    Checked here rather than at build time, so a mistake in a loss module fails on import:
    the name is new and not reserved, every searched or defaulted key is a constructor argument
    (or a harness key), every required constructor argument has a default, and each default lies
    in its searched range.
    """

    def decorator(cls: ModuleT) -> ModuleT:
        if not isinstance(name, str) or not name.isidentifier() or name != name.lower():
            raise LossError(f"loss name {name!r} is not accepted; expected a lower-case identifier")
        if name in RESERVED_NAMES:
            raise LossError(f"loss name '{name}' is reserved; choose a name other than "
                               + ", ".join(sorted(RESERVED_NAMES)))
        if name in _REGISTRY:
            raise LossError(f"loss name '{name}' is already registered by "
                               f"{_REGISTRY[name].cls.__module__}.{_REGISTRY[name].cls.__qualname__}")
        _REGISTRY[name] = _checked_info(name, cls, space, defaults, description, paper)
        return cls

    return decorator


def zoo_names() -> list[str]:
    """The losses registered by the zoo's own modules, sorted."""
    return sorted(_REGISTRY)


def zoo_info(name: str) -> LossInfo | None:
    """The record of zoo loss `name`, or None if the zoo has no such loss."""
    return _REGISTRY.get(name) if isinstance(name, str) else None
