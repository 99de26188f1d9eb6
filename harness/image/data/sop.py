"""Stanford Online Products (Song et al., CVPR 2016): 120,053 eBay photographs of 22,634 products.

Layout: the top folder of `Stanford_Online_Products.zip` inside `datasets/sop/`, or its contents placed there::

    Stanford_Online_Products/
        Ebay_train.txt   header "image_id class_id super_class_id path", 59,551 rows, classes 1..11,318
        Ebay_test.txt    the same header, 60,502 rows, classes 11,319..22,634
        bicycle_final/111085122871_0.JPG, ...   (paths relative to this folder)

Train and test rows are merged into one labelled set, train rows first; the benchmark's own split (first
floor(22,634 / 2) = 11,317 classes for search) then puts class 11,318 of the official train list in the test
half, as the paper's code did. Super classes are not used. The loader guarantees every listed image is on disk.
"""

from __future__ import annotations

from pathlib import Path

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

NAME = "sop"
OFFICIAL_IMAGES = 120_053
OFFICIAL_CLASSES = 22_634
ARCHIVES: tuple[Archive, ...] = (Archive("Stanford_Online_Products.zip", ""),)
HOW_TO_GET = ("download Stanford_Online_Products.zip by hand (the Stanford Online Products page of Hyun Oh Song "
              "et al., or an ftp.cs.stanford.edu mirror) and unzip it into datasets/sop/ "
              "(see datasets/sop/README.md)")

_TOP = "Stanford_Online_Products"
_HEADER = ("image_id", "class_id", "super_class_id", "path")


def locate(root: Path) -> Path | None:
    """The folder holding Ebay_train.txt: the archive's top folder inside `root`, or `root` itself."""
    for top in (Path(root) / _TOP, Path(root)):
        if (top / "Ebay_train.txt").is_file():
            return top
    return None


def _read_list(path: Path) -> list[tuple[str, int]]:
    """(path, class id) per row of one Ebay_*.txt; a bad line names the file and its line number."""
    lines = read_lines(path)
    if not lines or tuple(lines[0].split()) != _HEADER:
        raise HarnessError(f"{path}, line 1: expected the header '{' '.join(_HEADER)}', "
                           f"got {(lines[0] if lines else '')[:80]!r}")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split(maxsplit=3)
        if len(parts) != 4 or not all(part.isdecimal() for part in parts[:3]):
            raise line_error(path, number, "'<image_id> <class_id> <super_class_id> <path>'", line)
        rows.append((parts[3].strip(), int(parts[1])))
    return rows


def load(root: Path) -> ImageList:
    """Train rows then test rows, labelled by class position (class ids 1..22,634 in numeric order)."""
    root = Path(root)
    top = locate(root)
    if top is None:
        raise missing_dataset(NAME, [root / _TOP, root], "Ebay_train.txt", HOW_TO_GET)
    train_txt, test_txt = top / "Ebay_train.txt", top / "Ebay_test.txt"
    if not test_txt.is_file():
        raise missing_dataset(NAME, [top], "Ebay_test.txt", HOW_TO_GET)
    rows = _read_list(train_txt) + _read_list(test_txt)
    labels, class_names = class_positions([c for _, c in rows])
    images = ImageList(NAME, top, tuple(p for p, _ in rows), labels, class_names, (train_txt, test_txt),
                       OFFICIAL_IMAGES, OFFICIAL_CLASSES)
    check_files_exist(images)
    return images
