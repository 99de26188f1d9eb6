"""DeepFashion In-Shop Clothes Retrieval (Liu et al., CVPR 2016): 52,712 photographs of 7,982 clothing items.

Layout inside `datasets/inshop/` (or inside its Drive folder "In-shop Clothes Retrieval Benchmark" placed there)::

    Eval/list_eval_partition.txt   (or list_eval_partition.txt at the top)
        line 1: the number of rows (52712); line 2: "image_name item_id evaluation_status"; then rows such as
        "img/WOMEN/Dresses/id_00000002/02_1_front.jpg  id_00000002  train", status train, query or gallery
    img/WOMEN/Dresses/id_00000002/02_1_front.jpg, ...   (from Img/img.zip; or kept under Img/img/)

Items are the classes. It is a query/gallery benchmark: the 3,997 train items (25,882 images) take class
positions 0..T-1 and are the only classes the search folds see; the 3,985 test items follow at positions T..,
with 14,218 query and 12,612 gallery images. The loader guarantees that train and test items are disjoint and
that every listed image is on disk.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from harness.errors import HarnessError
from harness.image.data.listing import (
    Archive,
    ImageList,
    check_files_exist,
    class_positions,
    line_error,
    missing_dataset,
    read_lines,
)

__all__ = ["NAME", "OFFICIAL_IMAGES", "OFFICIAL_CLASSES", "ARCHIVES", "HOW_TO_GET", "locate", "load"]

NAME = "inshop"
OFFICIAL_IMAGES = 52_712
OFFICIAL_CLASSES = 7_982
ARCHIVES: tuple[Archive, ...] = (Archive("img.zip", ""), Archive("list_eval_partition.txt", ""))
HOW_TO_GET = ("no public URL: from the DeepFashion page (the authors' Google Drive, after accepting their "
              "agreement) take Img/img.zip and Eval/list_eval_partition.txt of the In-shop Clothes Retrieval "
              "Benchmark, unzip img.zip into datasets/inshop/ and keep the list there or under Eval/ "
              "(see datasets/inshop/README.md)")

_TOP = "In-shop Clothes Retrieval Benchmark"
_LIST = "list_eval_partition.txt"
_HEADER = ("image_name", "item_id", "evaluation_status")
_ROLES = ("train", "query", "gallery")
_ITEM = re.compile(r"id_([0-9]+)")


def locate(root: Path) -> Path | None:
    """The dataset's top folder, holding list_eval_partition.txt or Eval/: the Drive folder or `root`."""
    for top in (Path(root) / _TOP, Path(root)):
        if (top / "Eval" / _LIST).is_file() or (top / _LIST).is_file():
            return top
    return None


def _read_partition(path: Path) -> list[tuple[str, str, str, int]]:
    """(image name, item id, status, line number) per row; the count, header and statuses are checked."""
    lines = read_lines(path)
    if not lines or not lines[0].strip().isdecimal():
        raise HarnessError(f"{path}, line 1: expected the number of rows, got {(lines or [''])[0][:80]!r}")
    if len(lines) < 2 or tuple(lines[1].split()) != _HEADER:
        raise HarnessError(f"{path}, line 2: expected the header '{' '.join(_HEADER)}', "
                           f"got {(lines[1] if len(lines) > 1 else '')[:80]!r}")
    rows = []
    for number, line in enumerate(lines[2:], start=3):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or not _ITEM.fullmatch(parts[1]):
            raise line_error(path, number, "'<image_name> id_<number> <status>'", line)
        if parts[2] not in _ROLES:
            raise HarnessError(f"{path}, line {number}: unknown evaluation_status {parts[2]!r} "
                               "(expected train, query or gallery)")
        rows.append((parts[0], parts[1], parts[2], number))
    if int(lines[0]) != len(rows):
        raise HarnessError(f"{path}, line 1: says {int(lines[0]):,} rows, but the file lists {len(rows):,}")
    return rows


def load(root: Path) -> ImageList:
    """The rows of the partition list in file order; train items first in the class positions, then test items,
    each group in numeric id order, with the role of every image."""
    root = Path(root)
    top = locate(root)
    if top is None:
        raise missing_dataset(NAME, [root / _TOP, root], f"Eval/{_LIST} or {_LIST}", HOW_TO_GET)
    listing = top / "Eval" / _LIST if (top / "Eval" / _LIST).is_file() else top / _LIST
    rows = _read_partition(listing)
    first_line: dict[tuple[str, bool], int] = {}
    spelling: dict[int, str] = {}
    for _, item, role, number in rows:
        first_line.setdefault((item, role == "train"), number)
        if first_line.get((item, role != "train")) is not None:
            raise HarnessError(f"{listing}, line {number}: item {item} has both train and query/gallery images "
                               f"(also line {first_line[(item, role != 'train')]}); train and test items must be "
                               "disjoint")
        if spelling.setdefault(int(item[3:]), item) != item:
            raise HarnessError(f"{listing}, line {number}: item {item} has the same number as "
                               f"{spelling[int(item[3:])]}")
    roles = np.array([role for _, _, role, _ in rows], dtype=str)
    labels = np.zeros(len(rows), dtype=np.int64)
    train = roles == "train"
    train_labels, train_ids = class_positions([int(rows[i][1][3:]) for i in np.flatnonzero(train)])
    test_labels, test_ids = class_positions([int(rows[i][1][3:]) for i in np.flatnonzero(~train)])
    labels[train], labels[~train] = train_labels, test_labels + len(train_ids)
    prefix = "Img/" if not (top / "img").is_dir() and (top / "Img" / "img").is_dir() else ""
    images = ImageList(NAME, top, tuple(prefix + name for name, _, _, _ in rows), labels,
                       tuple(spelling[int(i)] for i in train_ids + test_ids), (listing,), OFFICIAL_IMAGES,
                       OFFICIAL_CLASSES, roles=roles, trainval_classes=len(train_ids))
    check_files_exist(images)
    return images
