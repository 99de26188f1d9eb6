"""Small copies of every dataset layout the loaders read, generated on the fly (tests never download).

Each image is a small JPEG whose colour and stripe pattern depend on its class, with per-image phase and noise
from a numpy Generator seeded by (class, image), so the same class and image index give the same bytes in every
layout and a network has something to learn. Every `make_*` returns what its loader takes.
"""

from __future__ import annotations

import colorsys
import csv
import math
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["make_cub", "make_cars", "make_sop", "make_inshop", "make_image_folder", "make_csv_set", "corrupt_image",
           "class_image"]


def class_image(class_index: int, image_index: int, size: tuple[int, int] = (50, 38)) -> Image.Image:
    """An RGB image (width, height) = `size`: a class colour and stripe angle/frequency, per-image phase and noise."""
    width, height = size
    rng = np.random.default_rng([class_index, image_index])
    colour = np.array(colorsys.hsv_to_rgb((class_index * 0.618034) % 1.0, 0.75, 0.9)) * 255.0
    angle = math.radians((class_index * 47) % 180)
    frequency = 1.5 + (class_index * 7) % 5
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    wave = np.sin(2 * math.pi * frequency * (x * math.cos(angle) + y * math.sin(angle)) + rng.uniform(0, 2 * math.pi))
    pixels = colour * (0.6 + 0.4 * wave[..., None]) + rng.normal(0.0, 10.0, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _write_image(path: Path, class_index: int, image_index: int, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = class_image(class_index, image_index, size)
    if path.suffix.lower() == ".png":
        image.save(path, "PNG")
    else:
        image.save(path, "JPEG", quality=90)


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


def make_cub(root: Path, *, num_classes: int = 40, per_class: int = 3, size: tuple[int, int] = (50, 38),
             with_top_folder: bool = True, class_names: bool = True) -> Path:
    """`root/cub200` (with CUB_200_2011/ inside or not); class ids appear in a shuffled order in every file and
    image_class_labels.txt runs backwards, so a loader must join by id and sort ids numerically."""
    folder = Path(root) / "cub200"
    top = folder / "CUB_200_2011" if with_top_folder else folder
    rng = np.random.default_rng(200)
    images, labels = [], []
    for class_id in (rng.permutation(num_classes) + 1).tolist():
        for k in range(per_class):
            rel = f"{class_id:03d}.Class_{class_id}/Class_{class_id}_{k:04d}_{len(images) + 1}.jpg"
            _write_image(top / "images" / rel, class_id, k, size)
            images.append(f"{len(images) + 1} {rel}")
            labels.append(f"{len(labels) + 1} {class_id}")
    _write_lines(top / "images.txt", images)
    _write_lines(top / "image_class_labels.txt", labels[::-1])
    if class_names:
        _write_lines(top / "classes.txt",
                     [f"{c} {c:03d}.Class_{c}" for c in (rng.permutation(num_classes) + 1).tolist()])
    return folder


def _struct(fields: dict[str, list]) -> np.ndarray:
    """A 1 x N MATLAB struct array for scipy.io.savemat."""
    count = len(next(iter(fields.values())))
    struct = np.zeros((1, count), dtype=[(name, object) for name in fields])
    for name, values in fields.items():
        for index, value in enumerate(values):
            struct[name][0, index] = value
    return struct


def _cell(strings: list[str]) -> np.ndarray:
    return np.array(strings, dtype=object).reshape(1, -1)


def _bbox(class_id: int, k: int, size: tuple[int, int]) -> dict[str, int]:
    return {"bbox_x1": 1 + k % 3, "bbox_y1": 1 + class_id % 3, "bbox_x2": size[0] - 1, "bbox_y2": size[1] - 1}


def make_cars(root: Path, *, layout: str = "annos", num_classes: int = 40, per_class: int = 3,
              size: tuple[int, int] = (50, 38)) -> Path:
    """`root/cars196` in the cars_annos.mat layout ("annos") or the devkit layout ("devkit", the test
    annotations at the top); both hold the same images per class (even image indices train, odd test)."""
    from scipy.io import savemat

    if layout not in ("annos", "devkit"):
        raise ValueError(f"layout must be 'annos' or 'devkit', not {layout!r}")
    folder = Path(root) / "cars196"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"Make{c} Model{c} Sedan {2000 + c}" for c in range(1, num_classes + 1)]
    rng = np.random.default_rng(196)
    order = [(int(c) + 1, k) for c in rng.permutation(num_classes) for k in range(per_class)]
    if layout == "annos":
        rows: dict[str, list] = {"relative_im_path": [], "bbox_x1": [], "bbox_y1": [], "bbox_x2": [], "bbox_y2": [],
                                 "class": [], "test": []}
        for number, (class_id, k) in enumerate(order, start=1):
            rel = f"car_ims/{number:06d}.jpg"
            _write_image(folder / rel, class_id, k, size)
            for field, value in {"relative_im_path": rel, **_bbox(class_id, k, size), "class": np.uint8(class_id),
                                 "test": np.uint8(k % 2)}.items():
                rows[field].append(value)
        savemat(folder / "cars_annos.mat", {"annotations": _struct(rows), "class_names": _cell(names)})
        return folder
    (folder / "devkit").mkdir(exist_ok=True)
    savemat(folder / "devkit" / "cars_meta.mat", {"class_names": _cell(names)})
    for split, target in (("train", folder / "devkit" / "cars_train_annos.mat"),
                          ("test", folder / "cars_test_annos_withlabels.mat")):
        rows = {"bbox_x1": [], "bbox_y1": [], "bbox_x2": [], "bbox_y2": [], "class": [], "fname": []}
        for class_id, k in order:
            if (k % 2 == 1) != (split == "test"):
                continue
            fname = f"{len(rows['fname']) + 1:05d}.jpg"
            _write_image(folder / f"cars_{split}" / fname, class_id, k, size)
            for field, value in {**_bbox(class_id, k, size), "class": np.uint8(class_id), "fname": fname}.items():
                rows[field].append(value)
        savemat(target, {"annotations": _struct(rows)})
    return folder


_SUPER_CLASSES = ("bicycle", "cabinet", "chair", "coffee_maker", "fan", "kettle", "lamp", "mug", "sofa", "stapler",
                  "table", "toaster")


def make_sop(root: Path, *, num_classes: int = 40, per_class: int = 3, size: tuple[int, int] = (50, 38)) -> Path:
    """`root/sop` with Stanford_Online_Products/ inside; like the real set, Ebay_train.txt holds one class more
    than half (classes 1..n//2+1), so the split rule moves one official train class into the test half."""
    folder = Path(root) / "sop"
    top = folder / "Stanford_Online_Products"
    train_classes = min(num_classes, num_classes // 2 + 1)
    lists: dict[str, list[str]] = {"Ebay_train.txt": [], "Ebay_test.txt": []}
    for class_id in range(1, num_classes + 1):
        super_class = (class_id - 1) % len(_SUPER_CLASSES)
        rows = lists["Ebay_train.txt" if class_id <= train_classes else "Ebay_test.txt"]
        for k in range(per_class):
            rel = f"{_SUPER_CLASSES[super_class]}_final/{111085122871 + 97 * class_id}_{k}.JPG"
            _write_image(top / rel, class_id, k, size)
            rows.append(f"{len(rows) + 1} {class_id} {super_class + 1} {rel}")
    for name, rows in lists.items():
        _write_lines(top / name, ["image_id class_id super_class_id path", *rows])
    return folder


_CATEGORIES = (("WOMEN", "Dresses"), ("MEN", "Denim"), ("WOMEN", "Blouses_Shirts"), ("MEN", "Tees_Tanks"),
               ("WOMEN", "Skirts"), ("MEN", "Jackets_Vests"))
_VIEWS = ("front", "side", "back", "full", "additional")


def make_inshop(root: Path, *, train_items: int = 24, test_items: int = 12, per_item: int = 4, eval_dir: bool = True,
                img_under_Img: bool = False, size: tuple[int, int] = (38, 50)) -> Path:
    """`root/inshop`: item ids interleave train and test items and rows come item by item in a shuffled order;
    each test item's images alternate query, gallery (so at least one of each when per_item >= 2)."""
    folder = Path(root) / "inshop"
    rng = np.random.default_rng(7982)
    total = train_items + test_items
    numbers = np.sort(rng.choice(np.arange(1, 10 * total + 10), size=total, replace=False))
    is_test = np.zeros(total, dtype=bool)
    is_test[rng.choice(total, size=test_items, replace=False)] = True
    images = folder / "Img" if img_under_Img else folder
    rows = []
    for index in rng.permutation(total).tolist():
        item = f"id_{int(numbers[index]):08d}"
        gender, category = _CATEGORIES[index % len(_CATEGORIES)]
        for k in range(per_item):
            name = f"img/{gender}/{category}/{item}/{k // len(_VIEWS) + 1:02d}_{k % len(_VIEWS) + 1}_" \
                   f"{_VIEWS[k % len(_VIEWS)]}.jpg"
            _write_image(images / name, index, k, size)
            status = ("query" if k % 2 == 0 else "gallery") if is_test[index] else "train"
            rows.append(f"{name:<64}{item:<16}{status}")
    listing = folder / "Eval" / "list_eval_partition.txt" if eval_dir else folder / "list_eval_partition.txt"
    _write_lines(listing, [str(len(rows)), "image_name item_id evaluation_status", *rows])
    return folder


def make_image_folder(root: Path, *, num_classes: int = 40, per_class: int = 3,
                      size: tuple[int, int] = (50, 38)) -> Path:
    """`root/own_folder` with class folders "1".."n" (numeric, so string order would be wrong); images use mixed
    extensions and cases, some in a nested folder, and each class folder also holds a non-image file."""
    folder = Path(root) / "own_folder"
    for class_id in range(1, num_classes + 1):
        for k in range(per_class):
            name = ("img_{k}.jpg", "nested/img_{k}.JPEG", "img_{k}.png")[k % 3].format(k=k)
            _write_image(folder / str(class_id) / name, class_id, k, size)
        (folder / str(class_id) / "notes.txt").write_text("not an image\n")
    return folder


def make_csv_set(root: Path, *, num_classes: int = 40, per_class: int = 3, size: tuple[int, int] = (50, 38)) -> Path:
    """`root/own_csv/own_csv.csv` (returned) with columns path,label,note, rows shuffled, string labels
    "class_07", images under `root/own_csv/images/`."""
    folder = Path(root) / "own_csv"
    rows = []
    for class_id in range(1, num_classes + 1):
        for k in range(per_class):
            rel = f"images/class_{class_id:02d}/{k}.jpg"
            _write_image(folder / rel, class_id, k, size)
            rows.append([rel, f"class_{class_id:02d}", f"shot {k}"])
    order = np.random.default_rng(7).permutation(len(rows)).tolist()
    target = folder / "own_csv.csv"
    with target.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "note"])
        writer.writerows(rows[i] for i in order)
    return target


def corrupt_image(path: Path) -> None:
    """Overwrite an image with bytes that no decoder accepts."""
    Path(path).write_bytes(b"this is not an image\x00\x01\x02")
