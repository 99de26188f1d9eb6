"""sentence-transformers' (ST's) own loss classes inside the protocol, reached by import path.

    LOSS=sentence_transformers.losses:BatchHardTripletLoss

ST's trainer calls a loss as `loss(sentence_features, labels)`: the loss runs `model(features)` on each column
and reads the "sentence_embedding" the model adds. Here the harness has computed the embeddings already, so the
adapter builds the ST loss with a stand-in model that returns the features it is handed, and hands it
`[{"sentence_embedding": embeddings}]`: ST's own arithmetic runs on the harness's embeddings, and the gradient
flows back through them into the harness's network.

Only ST losses that score one labelled column can run on the protocol's P x K batches: the batch triplet losses.
Each takes the space and defaults of the matching zoo loss (names mapped onto ST's constructor's), so that it
and the zoo's loss search the same space from the same start; ST's own default margin, 5, assumes unnormalised
embeddings (on unit vectors every triplet would stay active). ST's pair losses (MultipleNegativesRankingLoss,
CoSENTLoss, ...) take (anchor, positive, ...) columns, not a labelled batch: they are refused by name, pointing
to the zoo's losses/sentence.py, which feeds them from the labelled batch as ST's trainer would.

A class written in ST's style that declares its own space with `losses.declare_loss` runs through the same
adapter with the space it declares; its constructor's `model` needs a default (None) for the declaration's
checks, and the adapter always passes the stand-in.

Identity (`adapter_identity`): sha256 over the adapter's code (this module and what it imports from losses/),
the wrapped class's import path, and for each class of its MRO (torch's left out) either
"<distribution>==<version>" and the normalised source of its module alone, for a class of an installed package
(sentence-transformers==6.3.0), or its code identity as a plug-in's (losses.identity), for a user's own.
A version pins an installed package's code; the module's source also catches a locally patched file.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import sys
from collections.abc import Callable
from importlib import metadata
from typing import ClassVar

import torch

from losses.common import check_inputs
from losses.errors import LossError
from losses.identity import code_identity
from losses.registry import HARNESS_KEYS, LossInfo, declare_loss, zoo_info

__all__ = ["LABELLED", "PAIRED", "SentenceTransformersLoss", "adapt", "adapter_identity",
           "is_sentence_transformers_style", "wrapped_class"]

ST_PACKAGE = "sentence_transformers"
# ST loss class -> (the zoo loss whose space and defaults it takes, zoo hyperparameter -> ST constructor argument)
LABELLED = {
    "BatchAllTripletLoss": ("batch_all", {"margin": "margin"}),
    "BatchHardSoftMarginTripletLoss": ("batch_hard_soft_margin", {}),
    "BatchHardTripletLoss": ("batch_hard", {"margin": "margin"}),
    "BatchSemiHardTripletLoss": ("batch_semi_hard", {"margin": "margin"}),
}
# ST losses over (anchor, positive, ...) columns -> the zoo loss that feeds them from a labelled batch
PAIRED = {
    "AnglELoss": "angle",
    "CoSENTLoss": "cosent",
    "MultipleNegativesRankingLoss": "multiple_negatives_ranking",
    "MultipleNegativesSymmetricRankingLoss": "multiple_negatives_symmetric",
    "OnlineContrastiveLoss": "online_contrastive",
}


def is_sentence_transformers_style(cls: object) -> bool:
    """forward(sentence_features, labels) and `model` first in the constructor: a loss ST's trainer can call."""
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        return False
    try:
        forward = list(inspect.signature(cls.forward).parameters)
        init = list(inspect.signature(cls.__init__).parameters)
    except (TypeError, ValueError):  # a signature inspect cannot read: not one of ST's
        return False
    return forward[1:2] == ["sentence_features"] and init[1:2] == ["model"]


class _Features(torch.nn.Module):
    """The model as the ST loss sees it: the features it is handed already hold the harness's embeddings."""

    def forward(self, features: dict) -> dict:
        return features


class SentenceTransformersLoss(torch.nn.Module):
    """An ST-style loss on the harness's embeddings; `adapt` makes one subclass per wrapped class.

    The constructor takes the wrapped class's hyperparameters by keyword (its signature is the declared space's)
    and builds the wrapped loss with the stand-in model; forward is the zoo's forward(embeddings, labels).
    """

    wrapped: ClassVar[type[torch.nn.Module]]

    def __init__(self, **hparams: object) -> None:
        super().__init__()
        self.hparams = dict(hparams)
        for key, value in hparams.items():  # readable as the zoo's losses' are (module.margin)
            setattr(self, key, value)
        self.loss = self.wrapped(_Features(), **hparams)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_inputs(embeddings, labels)
        return self.loss([{"sentence_embedding": embeddings}], labels)

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.hparams.items())


def wrapped_class(cls: object) -> type[torch.nn.Module] | None:
    """The ST-style class an adapter made here runs, or None for any other loss class."""
    if isinstance(cls, type) and issubclass(cls, SentenceTransformersLoss) and cls is not SentenceTransformersLoss:
        return cls.wrapped
    return None


def _supported() -> str:
    return ", ".join(sorted(LABELLED))


def _from_st(cls: type) -> bool:
    return cls.__module__.split(".")[0] == ST_PACKAGE


def _refuse_unless_labelled(cls: type, spec: str) -> None:
    """A LossError for an undeclared ST-style class whose space no zoo loss gives."""
    name = cls.__qualname__
    if _from_st(cls) and name in LABELLED:
        return
    if _from_st(cls) and name in PAIRED:
        raise LossError(f"loss '{spec}': sentence-transformers' {name} scores (anchor, positive, ...) columns, not a "
                        f"labelled batch, so it cannot run on the protocol's batches; use the zoo's '{PAIRED[name]}', "
                        "which feeds it from the labelled batch as ST's trainer would. sentence-transformers losses "
                        f"that run by import path: {_supported()}")
    raise LossError(f"loss '{spec}': {name} is a sentence-transformers-style loss with no declared search space and "
                    "no zoo counterpart; sentence-transformers losses that run by import path on the protocol's "
                    f"labelled batches: {_supported()}. For another that scores one labelled column, subclass it and "
                    "decorate the subclass with @losses.declare_loss(space=..., defaults=..., description=..., "
                    "paper=...), its constructor's model defaulting to None")


def adapt(cls: type[torch.nn.Module], spec: str) -> LossInfo:
    """The record of ST-style class `cls` run through the adapter: its own declaration's space, else its zoo
    loss's; a LossError naming the ST losses that can run this way if it has neither."""
    if not isinstance(getattr(cls, "__loss_info__", None), LossInfo):
        _refuse_unless_labelled(cls, spec)
    return _adapted(cls)


@functools.cache
def _adapted(cls: type[torch.nn.Module]) -> LossInfo:
    """Checked like any declaration (losses.registry). Cached: one adapter class per wrapped class, so a process
    builds instances of one class and computes one identity."""
    declared = getattr(cls, "__loss_info__", None)
    if isinstance(declared, LossInfo):
        # the stand-in is always the model: a declaration's default for it is dropped
        space = {k: v for k, v in declared.space.items() if k != "model"}
        defaults = {k: v for k, v in declared.defaults.items() if k != "model"}
        description, paper = declared.description, declared.paper
    else:
        zoo_name, renamed = LABELLED[cls.__qualname__]
        zoo = zoo_info(zoo_name)
        space = {renamed[key]: dist for key, dist in zoo.space.items()}
        defaults = {renamed[key]: value for key, value in zoo.defaults.items()}
        description = f"sentence-transformers' {cls.__qualname__} on the harness's embeddings (space of '{zoo_name}')."
        paper = zoo.paper
    params = [inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY,
                                default=defaults.get(key, inspect.Parameter.empty))
              for key in sorted((set(space) | set(defaults)) - HARNESS_KEYS)]
    adapter = type(f"SentenceTransformers{cls.__name__}", (SentenceTransformersLoss,),
                   {"wrapped": cls, "__signature__": inspect.Signature(params), "__module__": __name__,
                    "__doc__": f"{cls.__module__}:{cls.__qualname__} on the harness's embeddings."})
    return declare_loss(space=space, defaults=defaults, description=description, paper=paper)(adapter).__loss_info__


@functools.cache
def _distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def _distribution(module_name: str) -> str | None:
    """'name==version' of the installed distribution that provides module_name's top-level package, else None."""
    names = _distributions().get(module_name.split(".")[0])
    if not names:
        return None
    try:
        return f"{names[0]}=={metadata.version(names[0])}"
    except metadata.PackageNotFoundError:
        return None


def adapter_identity(adapter: type, module_identity: Callable[[str], str]) -> str:
    """sha256 of what an adapted loss runs (see the module's docstring); `module_identity(name)` is a loaded
    module's code identity as the catalog computes it for a plug-in."""
    wrapped = wrapped_class(adapter)
    parts = {__name__: module_identity(__name__), "class": f"{wrapped.__module__}:{wrapped.__qualname__}"}
    for klass in wrapped.__mro__:
        name = klass.__module__
        if name.split(".")[0] in ("builtins", "torch") or name in parts:
            continue
        distribution = _distribution(name)
        if distribution is None:
            parts[name] = module_identity(name)
        else:
            parts[name] = f"{distribution} {code_identity(name, sys.modules[name].__file__, None)}"
    digest = hashlib.sha256()
    for key in sorted(parts):
        digest.update(key.encode() + b"\0" + parts[key].encode() + b"\0")
    return digest.hexdigest()
