"""The batches a protocol fixes: the harness's m-per-class, or sentence-transformers' group-by-label."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import numpy as np
import torch

from harness.errors import HarnessError
from harness.protocol import BatchSettings

__all__ = ["MPerClassSampler", "GroupByLabelSampler", "make_sampler"]


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


class GroupByLabelSampler:
    """sentence-transformers' GroupByLabelBatchSampler (v5.3 on; the same draws as its 6.3 code for the same
    seed), so its users compare losses on the batches its trainer gives them.

    Per epoch: labels with fewer than 2 items are dropped; each label's items are shuffled and trimmed to an
    even count; then, in rounds, every label that still has items gives 2 of them, in a label order shuffled
    anew each round (a label never gives two pairs in a row across rounds), until fewer than 2 labels
    remain. The stream is cut into batches of `batch_size`; the harness trains for a number of iterations,
    not epochs, so a short last batch is dropped (its `drop_last=True`) and the next epoch begins, seeded
    `seed + epoch` as its sampler seeds it.
    """

    def __init__(self, labels: torch.Tensor, *, batch_size: int, seed: int):
        if batch_size < 4 or batch_size % 2:
            raise HarnessError(f"the group-by-label sampler needs an even batch size of at least 4, not {batch_size}")
        groups: dict[int, list[int]] = {}
        for index, label in enumerate(labels.tolist()):
            groups.setdefault(label, []).append(index)
        self.groups = {label: items for label, items in groups.items() if len(items) >= 2}
        if len(self.groups) < 2:
            raise HarnessError(f"the group-by-label sampler needs 2 classes with at least 2 items each; the "
                               f"training set has {len(self.groups)}")
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0
        self.generator = torch.Generator()
        self._batches = self._epoch_batches()

    def _epoch_batches(self) -> Iterator[list[int]]:
        self.generator.manual_seed(self.seed + self.epoch)
        queues = {}
        for label, items in self.groups.items():
            order = torch.randperm(len(items), generator=self.generator)[: len(items) // 2 * 2]
            queues[label] = deque(items[i] for i in order)
        remaining, batch, last = list(queues), [], None
        while len(remaining) >= 2:
            remaining = [remaining[i] for i in torch.randperm(len(remaining), generator=self.generator)]
            if batch and remaining[0] == last:
                remaining[0], remaining[1] = remaining[1], remaining[0]
            for label in remaining:
                batch += [queues[label].popleft(), queues[label].popleft()]
                if len(batch) >= self.batch_size:
                    yield batch[: self.batch_size]
                    batch = batch[self.batch_size:]
            last = remaining[-1]
            remaining = [label for label in remaining if queues[label]]

    def next_batch(self) -> torch.Tensor:
        for _ in range(2):
            batch = next(self._batches, None)
            if batch is not None:
                return torch.tensor(batch)
            self.epoch += 1
            self._batches = self._epoch_batches()
        raise HarnessError(f"the group-by-label sampler cannot fill a batch of {self.batch_size} from one epoch "
                           "of this training set")


def make_sampler(labels: torch.Tensor, settings: BatchSettings, *, seed: int) -> MPerClassSampler | GroupByLabelSampler:
    """The protocol's sampler over class positions `labels`."""
    if settings.sampler == "group_by_label":
        return GroupByLabelSampler(labels, batch_size=settings.batch_size, seed=seed)
    return MPerClassSampler(labels, batch_size=settings.batch_size, m_per_class=settings.m_per_class, seed=seed)
