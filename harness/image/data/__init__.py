"""Datasets by name (or a researcher's folder or CSV), as the labelled image sets training reads.

Every dataset becomes an `ImageSet`: its pixels (one in-memory uint8 tensor for glyphs, the
memory-mapped decoded-image cache for image files), the rows of its items in those pixels, and class
positions 0..n-1 in class-id order, so that splits, samplers and evaluation index items, never files.
Data lives under `<data root>/<name>/` (default `./datasets`); the harness writes only under
`<data root>/.cache/` (content hashes and decoded images).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from harness.dataset_names import EMBEDDED, IMAGE_DATASETS, available_datasets, check_dataset_name, dataset_label
from harness.errors import HarnessError

__all__ = ["ImageSet", "available_datasets", "check_dataset_name", "dataset_label", "default_data_root",
           "list_images", "load_dataset", "dataset_version", "describe_datasets", "fetch_dataset", "IMAGE_DATASETS"]

@dataclass(frozen=True)
class ImageSet:
    """A dataset's items: rows into `pixels`, class positions, and (In-Shop) query/gallery roles.

    `version` pins the exact content; `trainval_classes` is set where the dataset fixes its own
    search classes (In-Shop's train items), otherwise the split rule takes the first half.
    """

    name: str
    version: str
    pixels: object  # torch.Tensor uint8 [N, C, H, W], or an ImageCache of HWC images
    rows: np.ndarray
    labels: torch.Tensor
    class_names: tuple[str, ...]
    channels: int
    roles: np.ndarray | None = None
    trainval_classes: int | None = None
    official: bool = True
    details: dict = field(default_factory=dict)  # where it was found, counts, warnings: for the record

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    kind = "image"  # its modality (harness.modality)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, classes: Sequence[int]) -> ImageSet:
        """Only the items of the given class positions: the search stage gets the trainval subset,
        so it cannot touch a test item even by mistake."""
        keep = torch.isin(self.labels, torch.as_tensor(list(classes), dtype=self.labels.dtype))
        mask = keep.numpy()
        return replace(self, rows=self.rows[mask], labels=self.labels[keep],
                       roles=None if self.roles is None else self.roles[mask])


def default_data_root() -> Path:
    """Found relative to the current directory (the repository root under make), never the package."""
    return Path.cwd() / "datasets"


def _cache_dir(root: Path) -> Path:
    """The one folder the harness writes under a data root: content hashes and decoded images."""
    return Path(root) / ".cache"


def _module(name: str) -> ModuleType:
    import importlib

    return importlib.import_module(f"harness.image.data.{name}")


def list_images(name: str, root: Path | None = None):
    """The ImageList of an image dataset (files and classes, checked to exist; nothing decoded)."""
    check_dataset_name(name)
    if name == EMBEDDED:
        raise HarnessError("glyphs is rendered, not read from image files")
    if name in IMAGE_DATASETS:
        return _module(name).load(Path(root or default_data_root()) / name)
    from harness.image.data.folder import load_own

    return load_own(Path(name).expanduser())


def dataset_version(name: str, *, image_size: int, root: Path | None = None) -> str:
    """The content version of a dataset without decoding any image file (cached hashes)."""
    root = Path(root or default_data_root())
    if name == EMBEDDED:
        return _load_glyphs(root, image_size).version
    from harness.image.data.listing import content_version

    return content_version(list_images(name, root), _cache_dir(root))


def load_dataset(name: str, *, image_size: int, resize: int = 0, root: Path | None = None,
                 progress: bool = True) -> ImageSet:
    """The dataset ready for training: glyphs rendered at image_size, image files decoded at `resize`
    (shorter side) into the cache."""
    check_dataset_name(name)
    root = Path(root or default_data_root())
    if name == EMBEDDED:
        return _load_glyphs(root, image_size)
    if resize <= 0:
        raise HarnessError(f"dataset {dataset_label(name)} is read from image files: its protocol needs "
                           "images.transform = \"resized_crop\" and images.resize (e.g. protocol smoke or "
                           "reality_check)")
    from harness.image.data.cache import build_cache
    from harness.image.data.listing import content_version

    images = list_images(name, root)
    warning = images.count_warning()
    if warning:
        print(f"harness: warning: {warning}", file=sys.stderr)
    cache_dir = _cache_dir(root)
    version = content_version(images, cache_dir)
    cache = build_cache(images, version, resize, cache_dir, progress=progress)
    return ImageSet(images.name, version, cache, np.arange(len(images)), torch.from_numpy(images.labels),
                    images.class_names, channels=3, roles=images.roles, trainval_classes=images.trainval_classes,
                    official=images.official,
                    details={"root": str(images.root), "official_images": images.official_images,
                             "official_classes": images.official_classes, "warning": warning})


def _load_glyphs(root: Path, image_size: int) -> ImageSet:
    from harness.image.data.glyphs import load_glyphs

    arrays = load_glyphs(root / EMBEDDED, image_size=image_size)
    images = torch.from_numpy(np.ascontiguousarray(arrays.images)).unsqueeze(1)
    return ImageSet(EMBEDDED, arrays.version, images, np.arange(len(images)),
                    torch.from_numpy(arrays.labels).long(), tuple(arrays.class_names), channels=1)


def fetch_dataset(name: str, root: Path | None = None, *, progress: bool = True) -> list[Path]:
    """Fetch, check and unpack a standard dataset into `<root>/<name>/`, or say how to get it by hand."""
    if name not in IMAGE_DATASETS:
        raise HarnessError(f"unknown dataset '{name}' to download; known: {', '.join(IMAGE_DATASETS)}")
    from harness.image.data.download import download_dataset

    module = _module(name)
    return download_dataset(name, module.ARCHIVES, Path(root or default_data_root()) / name,
                            how_to_get=module.HOW_TO_GET, progress=progress)


def describe_datasets(root: Path | None = None) -> list[dict]:
    """Every known dataset: present or not, where it looked, counts, official or not, version."""
    from harness.image.data.glyphs import FACES, common_characters
    from harness.image.data.listing import content_version

    root = Path(root or default_data_root())
    classes = len(common_characters())
    rows = [{"name": EMBEDDED, "present": True, "where": "rendered from matplotlib's fonts",
             "images": classes * len(FACES), "classes": classes, "official": True, "version": None}]
    for name in IMAGE_DATASETS:
        module = _module(name)
        row = {"name": name, "present": False, "where": str(root / name), "images": None, "classes": None,
               "official": None, "version": None, "official_images": module.OFFICIAL_IMAGES,
               "official_classes": module.OFFICIAL_CLASSES, "how_to_get": module.HOW_TO_GET}
        if module.locate(root / name) is not None:
            row["present"] = True
            try:
                images = module.load(root / name)
            except HarnessError as error:
                row["problem"] = str(error)
            else:
                row.update(where=str(images.root), images=len(images), classes=images.num_classes,
                           official=images.official, version=content_version(images, _cache_dir(root)))
        rows.append(row)
    return rows
