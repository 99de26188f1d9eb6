"""Images as a modality: what the engine calls (harness.modality.Modality), for every image set."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from harness.dataset_names import EMBEDDED
from harness.errors import HarnessError
from harness.protocol import Protocol

__all__ = ["IMAGE", "ImageModality"]


class ImageModality:
    name = "image"
    default_protocol = "quick"
    floors: dict = {}  # no network-free reference for images

    def owns(self, dataset: str) -> bool:
        return True  # every image set, and every path harness.modality found to be no other kind

    def check_inputs(self, dataset: str, protocol: Protocol) -> None:
        from harness.image.backbones import check_backbone_name

        check_backbone_name(protocol.model.backbone)
        wanted = "affine" if dataset == EMBEDDED else "resized_crop"
        if protocol.images.transform != wanted:
            raise HarnessError(
                f"protocol {protocol.name} uses images.transform = \"{protocol.images.transform}\", but dataset "
                f"{dataset} needs \"{wanted}\" ({'rendered in memory' if dataset == EMBEDDED else 'image files'}); "
                f"try --protocol {'quick' if dataset == EMBEDDED else 'smoke or reality_check'}")
        _check_input_normalisation(protocol)

    def load(self, dataset: str, protocol: Protocol, *, root: Path | None, progress: bool):
        from harness.image.data import load_dataset

        return load_dataset(dataset, image_size=protocol.images.image_size, resize=protocol.images.resize,
                            root=root, progress=progress)

    def describe(self, root: Path | None) -> list[dict]:
        from harness.image.data import describe_datasets

        return describe_datasets(root)

    def classes(self, dataset: str, *, root: Path | None) -> tuple[tuple[str, ...], int | None]:
        from harness.image.data import list_images
        from harness.image.data.glyphs import class_name, common_characters

        if dataset == EMBEDDED:  # without rendering a pixel
            return tuple(class_name(c) for c in common_characters()), None
        images = list_images(dataset, root)
        return images.class_names, images.trainval_classes

    def version(self, dataset: str, protocol: Protocol, *, root: Path | None) -> str:
        from harness.image.data import dataset_version

        return dataset_version(dataset, image_size=protocol.images.image_size, root=root)

    def build_network(self, protocol: Protocol, items) -> torch.nn.Module:
        from harness.image.network import EmbeddingNet

        return EmbeddingNet(protocol.model, in_chans=items.channels)

    def training_batch(self, items, index: np.ndarray, protocol: Protocol, rng: torch.Generator,
                       device: torch.device | None) -> torch.Tensor:
        from harness.image.transforms import train_batch

        return train_batch(items, index, protocol.images, rng, device=device)

    def evaluation_batches(self, items, protocol: Protocol, device: torch.device | None,
                           batch_size: int | None = None) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """Read from the pixels a batch at a time, in order, so the set is never copied to the device whole."""
        from harness.image.transforms import eval_batch

        batch_size = batch_size or (512 if protocol.images.transform == "affine" else 64)
        for start in range(0, len(items), batch_size):
            positions = np.arange(start, min(start + batch_size, len(items)))
            yield positions, eval_batch(items, positions, protocol.images, device=device)

    def check_fits(self, items, split, protocol: Protocol) -> None:
        from harness.image.transforms import eval_batch
        from harness.seeding import seed_everything

        seed_everything(0)
        model = self.build_network(protocol, items)  # loads and checks any weights
        with torch.no_grad():
            model.eval()(eval_batch(items, np.arange(min(2, len(items))), protocol.images))


def _check_input_normalisation(protocol: Protocol) -> None:
    """Pretrained weights expect one input (the weights' own metadata says which): the protocol must give it."""
    from harness.image.backbones import weight_metadata

    expected = weight_metadata(protocol.model.backbone, protocol.model.pretrained)
    if expected is None:
        return
    images = protocol.images
    given = {"channel_order": images.channel_order, "pixel_range": images.pixel_range,
             "mean": list(images.per_channel("mean", 3)), "std": list(images.per_channel("std", 3))}
    for key, value in given.items():
        want = expected[key]
        same = (value == want if isinstance(value, str) else
                bool(np.allclose(np.atleast_1d(value), np.atleast_1d(want), rtol=1e-3, atol=1e-6)))
        if not same:
            raise HarnessError(f"protocol {protocol.name}: the pretrained {protocol.model.backbone} weights expect "
                               f"images.{key} = {want}, the protocol gives {value}")


IMAGE = ImageModality()
