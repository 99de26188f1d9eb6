"""The network a text protocol trains: the encoder's last transformer layers on cached token states,
sentence-transformers' mean pooling, an optional residual head, then L2 normalisation.

It starts as the encoder itself (the layers are copies of the encoder's own, the head's last layer is
zero), so the untrained network embeds exactly as `SentenceTransformer.encode(..., normalize_embeddings=True)`
does: `none` on a text table is the model off the shelf.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TextNet", "ResidualHead", "mean_pool"]


def mean_pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sentence-transformers' Pooling(mean): the masked mean over tokens (its clamp included)."""
    weights = mask.unsqueeze(-1).to(states.dtype)
    return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


class ResidualHead(nn.Module):
    """x + W2 gelu(W1 x), with W2 = 0 at the start, so it begins as the identity."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.inner = nn.Linear(width, hidden)
        self.outer = nn.Linear(hidden, width)
        nn.init.zeros_(self.outer.weight)
        nn.init.zeros_(self.outer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.outer(F.gelu(self.inner(x)))


class TextNet(nn.Module):
    """trunk: the encoder's last k layers (their trunk learning rate); embedder: the head (or nothing)."""

    def __init__(self, encoder, trained_layers: int, head_hidden: int, normalize: bool = True) -> None:
        super().__init__()
        transformer = encoder[0].auto_model
        layers = transformer.encoder.layer
        self.config = transformer.config
        self.trunk = nn.ModuleList(copy.deepcopy(layers[len(layers) - trained_layers:]) if trained_layers else [])
        width = (encoder.get_embedding_dimension() if hasattr(encoder, "get_embedding_dimension")
                 else encoder.get_sentence_embedding_dimension())
        self.embedder = ResidualHead(width, head_hidden) if head_hidden else nn.Identity()
        self.normalize = normalize

    def forward(self, batch: tuple[torch.Tensor, torch.Tensor | None]) -> torch.Tensor:
        states, mask = batch
        if mask is not None:  # token states: the trained layers, then mean pooling
            if len(self.trunk):
                from transformers.masking_utils import create_bidirectional_mask

                attention = create_bidirectional_mask(config=self.config, inputs_embeds=states, attention_mask=mask)
                for layer in self.trunk:
                    states = layer(states, attention)
            states = mean_pool(states, mask)
        embeddings = self.embedder(states)
        return F.normalize(embeddings, dim=1) if self.normalize else embeddings
