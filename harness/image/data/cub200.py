"""CUB-200-2011 (Wah et al., Caltech 2011): 11,788 photographs of 200 bird species.

Layout: the top folder of `CUB_200_2011.tgz` inside `datasets/cub200/`, or its contents placed directly there::

    CUB_200_2011/
        images.txt              "<image_id> <path>", paths relative to images/
        image_class_labels.txt  "<image_id> <class_id>", class ids 1..200
        classes.txt             "<class_id> <name>", e.g. "1 001.Black_footed_Albatross" (optional)
        images/001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg, ...

`train_test_split.txt`, bounding boxes, parts and attributes are not read: the benchmark splits by class and
uses whole images. The loader guarantees that every image of images.txt has exactly one class and is on disk.
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

NAME = "cub200"
OFFICIAL_IMAGES = 11_788
OFFICIAL_CLASSES = 200
ARCHIVES: tuple[Archive, ...] = (
    Archive("CUB_200_2011.tgz", "97eceeb196236b17998738112f37df78",
            "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz"),
)
HOW_TO_GET = ("run `harness datasets download cub200`, or download CUB_200_2011.tgz from data.caltech.edu and "
              "unpack it into datasets/cub200/ (see datasets/cub200/README.md)")

_TOP = "CUB_200_2011"


def locate(root: Path) -> Path | None:
    """The folder holding images.txt: the archive's top folder inside `root`, or `root` itself."""
    for top in (Path(root) / _TOP, Path(root)):
        if (top / "images.txt").is_file():
            return top
    return None


def _read_pairs(path: Path, what: str, *, integer: bool = False) -> dict[int, str | int]:
    """`<id> <value>` per line, keyed by id in file order; a bad line names the file and its line number."""
    lines = read_lines(path)
    pairs: dict[int, str | int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not parts[0].isdecimal() or (integer and not parts[1].strip().isdecimal()):
            raise line_error(path, number, f"'<id> <{what}>'", line)
        key = int(parts[0])
        if key in pairs:
            raise HarnessError(f"{path}, line {number}: id {key} is listed twice")
        pairs[key] = int(parts[1]) if integer else parts[1].strip()
    return pairs


def load(root: Path) -> ImageList:
    """The images of images.txt in file order, labelled by class position (class ids in numeric order)."""
    root = Path(root)
    top = locate(root)
    if top is None:
        raise missing_dataset(NAME, [root / _TOP, root], "images.txt", HOW_TO_GET)
    images_txt, labels_txt, classes_txt = top / "images.txt", top / "image_class_labels.txt", top / "classes.txt"
    if not labels_txt.is_file():
        raise missing_dataset(NAME, [top], "image_class_labels.txt", HOW_TO_GET)
    paths = _read_pairs(images_txt, "relative path")
    class_of = _read_pairs(labels_txt, "class_id", integer=True)
    unlabelled = next((i for i in paths if i not in class_of), None)
    if unlabelled is not None:
        raise HarnessError(f"{labels_txt}: image {unlabelled} of images.txt has no class")
    unlisted = next((i for i in class_of if i not in paths), None)
    if unlisted is not None:
        raise HarnessError(f"{images_txt}: image {unlisted} of image_class_labels.txt is not listed")
    labels, ids = class_positions([class_of[i] for i in paths])
    annotation_files = [images_txt, labels_txt]
    class_names = ids
    if classes_txt.is_file():
        names = _read_pairs(classes_txt, "class name")
        unnamed = next((c for c in ids if int(c) not in names), None)
        if unnamed is not None:
            raise HarnessError(f"{classes_txt}: class {unnamed} of image_class_labels.txt has no name")
        class_names = tuple(str(names[int(c)]) for c in ids)
        annotation_files.append(classes_txt)
    images = ImageList(NAME, top, tuple(f"images/{p}" for p in paths.values()), labels, class_names,
                       tuple(annotation_files), OFFICIAL_IMAGES, OFFICIAL_CLASSES)
    check_files_exist(images)
    return images
