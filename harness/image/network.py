"""The network every loss trains: a trunk (the harness's own backbones first, then timm's) and a
linear embedder, fixed by the protocol."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.image.backbones import create_backbone
from harness.protocol import ModelSettings


class EmbeddingNet(nn.Module):
    """Trunk features -> linear embedder -> (optionally) L2-normalised embedding."""

    def __init__(self, settings: ModelSettings, in_chans: int):
        super().__init__()
        self.trunk = create_backbone(settings.backbone, pretrained=settings.pretrained,
                                     weights=settings.weights or None, in_chans=in_chans)
        self.embedder = nn.Linear(self.trunk.num_features, settings.embedding_size)
        self.normalize_embeddings = settings.normalize_embeddings
        self.freeze_batchnorm = settings.freeze_batchnorm
        if self.freeze_batchnorm:
            for module in self._batchnorms():
                for parameter in module.parameters():
                    parameter.requires_grad_(False)

    def _batchnorms(self) -> list[nn.Module]:
        return [m for m in self.trunk.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def train(self, mode: bool = True) -> EmbeddingNet:
        """Frozen BatchNorm keeps its running statistics even while the rest trains."""
        super().train(mode)
        if self.freeze_batchnorm:
            for module in self._batchnorms():
                module.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        embeddings = self.embedder(self.trunk(images))
        return F.normalize(embeddings, dim=1) if self.normalize_embeddings else embeddings
