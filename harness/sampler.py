"""Class-balanced batches: m images from each of batch_size/m classes, as the protocol fixes."""

from __future__ import annotations

import numpy as np
import torch

from harness.errors import HarnessError


class MPerClassSampler:
    """Draws batches of `batch_size // m` distinct classes with `m` images each.

    Images of a class are drawn without replacement when the class has at least m of them, with
    replacement otherwise, so small classes still give positive pairs.
    """

    def __init__(self, labels: torch.Tensor, *, batch_size: int, m_per_class: int, seed: int):
        self.m = m_per_class
        self.classes_per_batch = batch_size // m_per_class
        labels_np = labels.cpu().numpy()
        order = np.argsort(labels_np, kind="stable")
        classes, starts, counts = np.unique(labels_np[order], return_index=True, return_counts=True)
        self.indices_by_class = [order[s:s + c] for s, c in zip(starts, counts, strict=True)]
        if len(classes) < self.classes_per_batch:
            raise HarnessError(f"a batch needs {self.classes_per_batch} classes, the training set has "
                               f"only {len(classes)}")
        self.rng = np.random.default_rng(seed)

    def next_batch(self) -> torch.Tensor:
        chosen = self.rng.choice(len(self.indices_by_class), self.classes_per_batch, replace=False)
        parts = []
        for c in chosen:
            pool = self.indices_by_class[c]
            parts.append(self.rng.choice(pool, self.m, replace=len(pool) < self.m))
        return torch.from_numpy(np.concatenate(parts))
