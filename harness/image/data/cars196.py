"""Cars196 / Stanford Cars (Krause et al., 3dRR 2013): 16,185 photographs of 196 car models.

Two layouts inside `datasets/cars196/`, detected by their annotation file (the first wins when both are there):

(a) the all-in-one release::

        cars_annos.mat   struct array `annotations` (relative_im_path "car_ims/000001.jpg", bbox_x1..bbox_y2,
                         class 1..196, test 0/1) and cell array `class_names`
        car_ims/000001.jpg, ...

(b) the devkit release, train and test images numbered separately::

        devkit/cars_meta.mat                 `class_names`
        devkit/cars_train_annos.mat          struct array `annotations` (bbox_x1..bbox_y2, class, fname "00001.jpg")
        cars_test_annos_withlabels.mat       the same fields for the test images (here or under devkit/)
        cars_train/00001.jpg, ...  cars_test/00001.jpg, ...

Layout (b) is merged into one labelled set, train images first, then test; both releases number the classes
1..196 alike. Bounding boxes and the official train/test flag are not used: the benchmark splits by class and
uses whole images. The loader guarantees both layouts give the same classes, names and images per class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.errors import HarnessError
from harness.image.data.listing import Archive, ImageList, check_files_exist, class_positions, missing_dataset

__all__ = ["NAME", "OFFICIAL_IMAGES", "OFFICIAL_CLASSES", "ARCHIVES", "HOW_TO_GET", "locate", "load"]

NAME = "cars196"
OFFICIAL_IMAGES = 16_185
OFFICIAL_CLASSES = 196
ARCHIVES: tuple[Archive, ...] = (
    Archive("car_ims.tgz", "d5c8f0aa497503f355e17dc7886c3f14"),
    Archive("cars_annos.mat", "b407c6086d669747186bd1d764ff9dbc"),
)
HOW_TO_GET = ("no public download: put car_ims/ (from car_ims.tgz) and cars_annos.mat into datasets/cars196/, or "
              "the devkit release (devkit/, cars_train/, cars_test/, cars_test_annos_withlabels.mat) there "
              "(see datasets/cars196/README.md)")

_ANNOS = "cars_annos.mat"
_DEVKIT_TRAIN = "devkit/cars_train_annos.mat"
_TEST_ANNOS = "cars_test_annos_withlabels.mat"


def locate(root: Path) -> Path | None:
    """The folder holding cars_annos.mat or devkit/: the files have no common top folder, so `root` itself."""
    root = Path(root)
    return root if (root / _ANNOS).is_file() or (root / _DEVKIT_TRAIN).is_file() else None


def _read_mat(path: Path, field: str) -> np.ndarray:
    """One variable of a .mat file as a 1-d array (scipy squeezes a single entry down to a scalar)."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        contents = loadmat(path, squeeze_me=True)
    except (OSError, ValueError, TypeError, NotImplementedError, MatReadError) as error:
        raise HarnessError(f"{path}: not a readable .mat file ({str(error).splitlines()[0]})") from None
    if field not in contents:
        raise HarnessError(f"{path}: has no variable '{field}'")
    return np.atleast_1d(contents[field])


def _annotations(path: Path, fields: tuple[str, ...]) -> list[tuple[str, int]]:
    """(image path field, class id) of each entry of the struct array `annotations`."""
    annotations = _read_mat(path, "annotations")
    for field in fields:
        if annotations.dtype.names is None or field not in annotations.dtype.names:
            raise HarnessError(f"{path}: 'annotations' has no field '{field}'")
    rows = []
    for index, entry in enumerate(annotations, start=1):
        name, class_id = entry[fields[0]], entry[fields[1]]
        if (not isinstance(name, str) or not name or not isinstance(class_id, int | float | np.number)
                or not float(class_id).is_integer()):
            raise HarnessError(f"{path}: annotations entry {index} has {fields[0]}={name!r}, class={class_id!r}; "
                               "expected a file name and one integer class")
        rows.append((name, int(class_id)))
    return rows


def _class_names(path: Path) -> list[str]:
    return [str(name) for name in _read_mat(path, "class_names")]


def load(root: Path) -> ImageList:
    """All images of either layout, labelled by class position (class ids 1..196 in numeric order)."""
    root = Path(root)
    top = locate(root)
    if top is None:
        raise missing_dataset(NAME, [root], f"{_ANNOS} or {_DEVKIT_TRAIN}", HOW_TO_GET)
    if (top / _ANNOS).is_file():
        annotation_files = (top / _ANNOS,)
        rows = _annotations(top / _ANNOS, ("relative_im_path", "class"))
        names = _class_names(top / _ANNOS)
    else:
        test_annos = next((p for p in (top / _TEST_ANNOS, top / "devkit" / _TEST_ANNOS) if p.is_file()), None)
        if test_annos is None:
            raise missing_dataset(NAME, [top, top / "devkit"], _TEST_ANNOS, HOW_TO_GET)
        meta = top / "devkit" / "cars_meta.mat"
        if not meta.is_file():
            raise missing_dataset(NAME, [top / "devkit"], "cars_meta.mat", HOW_TO_GET)
        annotation_files = (meta, top / _DEVKIT_TRAIN, test_annos)
        rows = ([(f"cars_train/{f}", c) for f, c in _annotations(top / _DEVKIT_TRAIN, ("fname", "class"))]
                + [(f"cars_test/{f}", c) for f, c in _annotations(test_annos, ("fname", "class"))])
        names = _class_names(meta)
    labels, ids = class_positions([c for _, c in rows])
    unnamed = next((c for c in ids if not 1 <= int(c) <= len(names)), None)
    if unnamed is not None:
        raise HarnessError(f"{annotation_files[0]}: class {unnamed} is outside class_names (1..{len(names)})")
    images = ImageList(NAME, top, tuple(p for p, _ in rows), labels, tuple(names[int(c) - 1] for c in ids),
                       annotation_files, OFFICIAL_IMAGES, OFFICIAL_CLASSES)
    check_files_exist(images)
    return images
