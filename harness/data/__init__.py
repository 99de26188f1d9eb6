"""Datasets as in-memory labelled image sets, looked up by name.

Every dataset is held as one uint8 tensor of images and one tensor of class positions (0..n-1, in
sorted label order), so that splits, samplers and evaluation index tensors instead of files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness.errors import HarnessError

__all__ = ["ImageSet", "available_datasets", "load_dataset", "DATA_ROOT"]

DATA_ROOT = Path(__file__).resolve().parents[2] / "datasets"


@dataclass(frozen=True)
class ImageSet:
    """Images (uint8, [N, C, H, W]) with class positions; `version` pins the exact content."""

    name: str
    version: str
    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, classes: Sequence[int]) -> ImageSet:
        """Only the items of the given class positions: the search stage gets the trainval subset,
        so it cannot touch a test item even by mistake."""
        keep = torch.isin(self.labels, torch.as_tensor(list(classes), dtype=self.labels.dtype))
        return ImageSet(self.name, self.version, self.images[keep], self.labels[keep], self.class_names)


def _load_glyphs(root: Path, image_size: int) -> ImageSet:
    from harness.data.glyphs import load_glyphs

    arrays = load_glyphs(root / "glyphs", image_size=image_size)
    images = torch.from_numpy(np.ascontiguousarray(arrays.images)).unsqueeze(1)
    return ImageSet("glyphs", arrays.version, images, torch.from_numpy(arrays.labels).long(),
                    tuple(arrays.class_names))


_LOADERS: dict[str, Callable[[Path, int], ImageSet]] = {"glyphs": _load_glyphs}


def available_datasets() -> list[str]:
    return sorted(_LOADERS)


def check_dataset_name(name: str) -> None:
    if name not in _LOADERS:
        raise HarnessError(f"unknown dataset '{name}'; known datasets: {', '.join(available_datasets())}")


def load_dataset(name: str, *, image_size: int, root: Path | None = None) -> ImageSet:
    check_dataset_name(name)
    return _LOADERS[name](Path(root) if root else DATA_ROOT, image_size)
