"""Deep metric learning losses, reached through a registry so the harness treats them alike.

    import losses
    losses.available()                       # ['batch_all', 'batch_hard', ...]
    losses.search_space("batch_hard")        # {'margin': FloatDistribution(0.01, 1.0)}
    params = losses.suggest(trial, "batch_hard")
    criterion = losses.build("batch_hard", embedding_dim=128, num_classes=100, **params)
    loss = criterion(embeddings, labels)     # embeddings [B, D] float, labels [B] int64

A new loss module registers its classes with `register_loss` and is imported below.
"""

from __future__ import annotations

from losses.catalog import available, build, identity, info, search_space, suggest, summary
from losses.errors import LossError
from losses.registry import HARNESS_KEYS, RESERVED_NAMES, LossInfo, declare_loss, describe, register_loss

__all__ = [
    "HARNESS_KEYS",
    "LossError",
    "RESERVED_NAMES",
    "LossInfo",
    "available",
    "build",
    "declare_loss",
    "describe",
    "identity",
    "info",
    "register_loss",
    "search_space",
    "suggest",
    "summary",
]

# the loss families, imported for their registrations (after the registry they register into)
from losses import infonce, pair, proxy, sentence, softmax, triplet  # noqa: E402, F401, I001
