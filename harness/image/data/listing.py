"""What a dataset loader returns: the image files and their classes, nothing decoded yet.

Every image dataset (CUB, Cars, SOP, In-Shop, a researcher's folder or CSV) is first read into an
`ImageList` from its annotation files; the checks shared by all of them live here: that every listed
file exists, whether the copy matches the official counts, and the content hash that becomes the
dataset version (annotation bytes and image bytes, computed once per copy and cached).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.atomic import write_atomic
from harness.errors import HarnessError

__all__ = ["Archive", "ImageList", "class_positions", "check_files_exist", "content_version", "line_error",
           "missing_dataset", "read_lines"]


@dataclass(frozen=True)
class ImageList:
    """Image files with class positions 0..C-1 (classes in id order, so positions match the paper).

    `roles` is set only for query/gallery benchmarks (In-Shop): "train", "query" or "gallery" per
    item; there the train items' classes are positions 0..trainval_classes-1 and the split rule's
    folds run over them, while query and gallery items hold the remaining positions.
    """

    name: str
    root: Path  # image paths are relative to this folder
    paths: tuple[str, ...]
    labels: np.ndarray  # int64 [N]
    class_names: tuple[str, ...]  # the class id or name at each position
    annotation_files: tuple[Path, ...]  # hashed into the version together with the images
    official_images: int | None = None  # counts of the official release; None for a researcher's set
    official_classes: int | None = None
    roles: np.ndarray | None = None
    trainval_classes: int | None = None

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def official(self) -> bool:
        """The copy holds the official number of images and classes."""
        return (self.official_images is not None and len(self) == self.official_images
                and self.num_classes == self.official_classes)

    def count_warning(self) -> str | None:
        """One line when a copy of an official set differs from the official counts."""
        if self.official_images is None or self.official:
            return None
        return (f"{self.name}: this copy has {len(self):,} images and {self.num_classes:,} classes, the official "
                f"release {self.official_images:,} and {self.official_classes:,}; it runs, but its dataset "
                "version differs, so its rows get tables of their own")


def class_positions(class_ids: Sequence) -> tuple[np.ndarray, tuple[str, ...]]:
    """Positions 0..C-1 of each item's class, with classes ordered by numeric id when all ids are
    integers (CUB 1..200, not "1", "10", "100") and by string otherwise; returns (labels, names)."""
    ids = [str(c) for c in class_ids]
    try:
        keys = {c: (int(c), c) for c in set(ids)}
    except ValueError:
        keys = {c: (0, c) for c in set(ids)}
    names = sorted(keys, key=keys.__getitem__)
    position = {name: i for i, name in enumerate(names)}
    return np.array([position[c] for c in ids], dtype=np.int64), tuple(names)


def check_files_exist(images: ImageList) -> None:
    """Every listed image is a file; otherwise name the first missing one and how many are missing."""
    missing = [p for p in images.paths if not (images.root / p).is_file()]
    if missing:
        raise HarnessError(f"{images.name}: {len(missing):,} of {len(images):,} listed images are missing, "
                           f"the first: {images.root / missing[0]}")


def read_lines(path: Path) -> list[str]:
    """An annotation file's lines; one that cannot be read as UTF-8 text is named."""
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise HarnessError(f"{path}: cannot be read as text ({error})") from None


def line_error(path: Path, number: int, expected: str, line: str) -> HarnessError:
    """An annotation line that does not parse: the file, the 1-based line number, what was expected."""
    return HarnessError(f"{path}, line {number}: expected {expected}, got {line.strip()[:80]!r}")


def missing_dataset(name: str, looked: Sequence[Path], needs: str, how_to_get: str) -> HarnessError:
    """The one line a missing dataset gets: where it looked, what it looked for, how to get it."""
    where = " and ".join(str(p) for p in looked)
    return HarnessError(f"dataset {name} not found: looked for {needs} in {where}; {how_to_get}")


def _fingerprint(images: ImageList) -> str:
    """Cheap identity of a copy (listing, labels, file sizes and mtimes) that keys the cached hash."""
    digest = hashlib.sha256()
    for path in images.annotation_files:
        stat = path.stat()
        digest.update(f"a\0{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    for rel, label in zip(images.paths, images.labels.tolist(), strict=True):
        stat = os.stat(images.root / rel)
        digest.update(f"i\0{rel}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    digest.update(json.dumps([images.class_names, None if images.roles is None else images.roles.tolist()])
                  .encode())
    return digest.hexdigest()


def content_version(images: ImageList, cache_dir: Path) -> str:
    """`<name>-<sha256[:12]>` of the annotation files' and images' bytes (in listing order), with
    labels and roles; hashed once per copy and cached under `cache_dir` by a fingerprint of sizes
    and mtimes, so later runs only stat the files."""
    fingerprint = _fingerprint(images)
    cached = Path(cache_dir) / "versions" / f"{images.name}-{fingerprint[:24]}.json"
    if cached.is_file():
        try:
            stored = json.loads(cached.read_text())
            if stored.get("fingerprint") == fingerprint:
                return stored["version"]
        except (json.JSONDecodeError, KeyError, UnicodeDecodeError):
            pass  # a damaged cache entry is recomputed and rewritten
    digest = hashlib.sha256()
    for path in images.annotation_files:
        digest.update(b"annotation\0" + path.name.encode() + b"\0" + path.read_bytes())
    for rel, label in zip(images.paths, images.labels.tolist(), strict=True):
        digest.update(f"image\0{rel}\0{label}\0".encode())
        with open(images.root / rel, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    digest.update(json.dumps([images.class_names, None if images.roles is None else images.roles.tolist()])
                  .encode())
    version = f"{images.name}-{digest.hexdigest()[:12]}"
    write_atomic(cached, json.dumps({"fingerprint": fingerprint, "version": version}) + "\n")
    return version


@dataclass(frozen=True)
class Archive:
    """One published file of a dataset: where it is (None when there is no public URL) and its md5."""

    filename: str
    md5: str
    url: str | None = None
