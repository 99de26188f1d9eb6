"""Every dataset loader reads its generated layouts, orders classes by numeric id and explains bad input in one line."""

from __future__ import annotations

import hashlib
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from dataset_fixtures import (
    corrupt_image,
    make_cars,
    make_csv_set,
    make_cub,
    make_image_folder,
    make_inshop,
    make_sop,
)
from PIL import Image, UnidentifiedImageError
from scipy.io import savemat

from harness.errors import HarnessError
from harness.image.data import cars196, cub200, folder, inshop, sop
from harness.image.data.listing import ImageList


def _one_line(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message
    return message


def _check_common(images: ImageList, module, *, count: int, classes: int) -> None:
    """Counts, files on disk, forward-slash relative paths, and the official-count flag and warning."""
    assert len(images) == count and images.num_classes == classes
    assert images.labels.dtype == np.int64 and sorted(set(images.labels.tolist())) == list(range(classes))
    assert all("\\" not in p and not p.startswith("/") and (images.root / p).is_file() for p in images.paths)
    assert all(path.is_file() for path in images.annotation_files)
    assert (images.official_images, images.official_classes) == (module.OFFICIAL_IMAGES, module.OFFICIAL_CLASSES)
    assert not images.official
    warning = images.count_warning()
    assert isinstance(warning, str) and "\n" not in warning and module.NAME in warning


def _becomes_official(monkeypatch, module, root: Path, images: ImageList) -> None:
    monkeypatch.setattr(module, "OFFICIAL_IMAGES", len(images))
    monkeypatch.setattr(module, "OFFICIAL_CLASSES", images.num_classes)
    again = module.load(root)
    assert again.official and again.count_warning() is None


# ---- CUB-200-2011 ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("with_top_folder", [True, False])
def test_cub_loads_both_placements(tmp_path, monkeypatch, with_top_folder):
    root = make_cub(tmp_path, with_top_folder=with_top_folder)
    images = cub200.load(root)
    _check_common(images, cub200, count=120, classes=40)
    assert images.root == (root / "CUB_200_2011" if with_top_folder else root)
    assert cub200.locate(root) == images.root
    assert images.class_names == tuple(f"{c:03d}.Class_{c}" for c in range(1, 41))
    for path, label in zip(images.paths, images.labels.tolist(), strict=True):
        assert path.startswith("images/") and int(path.split("/")[1][:3]) == label + 1
    listed = (images.root / "images.txt").read_text().split()
    assert images.paths == tuple(f"images/{p}" for p in listed[1::2])  # the order of images.txt
    assert {p.name for p in images.annotation_files} == {"images.txt", "image_class_labels.txt", "classes.txt"}
    _becomes_official(monkeypatch, cub200, root, images)


def test_cub_without_classes_txt_names_classes_by_id(tmp_path):
    images = cub200.load(make_cub(tmp_path, class_names=False, num_classes=12))
    assert images.class_names == tuple(str(c) for c in range(1, 13))
    assert len(images.annotation_files) == 2


def test_cub_missing_folder_says_where_and_how(tmp_path):
    with pytest.raises(HarnessError) as excinfo:
        cub200.load(tmp_path / "cub200")
    message = _one_line(excinfo)
    assert str(tmp_path / "cub200" / "CUB_200_2011") in message and "images.txt" in message
    assert "harness datasets download cub200" in message and "datasets/cub200/README.md" in message


def test_cub_missing_images_name_the_first_and_count(tmp_path):
    root = make_cub(tmp_path)
    listed = (root / "CUB_200_2011" / "images.txt").read_text().split()[1::2]
    for rel in (listed[5], listed[9]):
        (root / "CUB_200_2011" / "images" / rel).unlink()
    with pytest.raises(HarnessError) as excinfo:
        cub200.load(root)
    message = _one_line(excinfo)
    assert listed[5] in message and "2 of 120" in message


def test_cub_malformed_line_names_file_and_line(tmp_path):
    root = make_cub(tmp_path)
    images_txt = root / "CUB_200_2011" / "images.txt"
    lines = images_txt.read_text().splitlines()
    lines[4] = "five 001.Class_1/x.jpg"
    images_txt.write_text("\n".join(lines) + "\n")
    with pytest.raises(HarnessError) as excinfo:
        cub200.load(root)
    message = _one_line(excinfo)
    assert str(images_txt) in message and "line 5" in message


def test_cub_image_without_label_is_named(tmp_path):
    root = make_cub(tmp_path)
    labels_txt = root / "CUB_200_2011" / "image_class_labels.txt"
    lines = labels_txt.read_text().splitlines()
    dropped = lines.pop(7).split()[0]
    labels_txt.write_text("\n".join(lines) + "\n")
    with pytest.raises(HarnessError, match=rf"image {dropped} of images.txt has no class") as excinfo:
        cub200.load(root)
    _one_line(excinfo)


# ---- Cars196 ---------------------------------------------------------------------------------------------------

def _per_class_images(images: ImageList) -> dict[str, Counter]:
    """Image bytes per class name: equal across layouts when both hold the same pictures in the same classes."""
    per_class: dict[str, Counter] = {}
    for path, label in zip(images.paths, images.labels.tolist(), strict=True):
        digest = hashlib.md5((images.root / path).read_bytes()).hexdigest()
        per_class.setdefault(images.class_names[label], Counter())[digest] += 1
    return per_class


def test_cars_layouts_give_the_same_classes_and_images(tmp_path, monkeypatch):
    annos = cars196.load(make_cars(tmp_path / "a", layout="annos"))
    devkit = cars196.load(make_cars(tmp_path / "b", layout="devkit"))
    for images in (annos, devkit):
        _check_common(images, cars196, count=120, classes=40)
    assert annos.class_names == devkit.class_names == tuple(f"Make{c} Model{c} Sedan {2000 + c}" for c in range(1, 41))
    assert np.array_equal(np.bincount(annos.labels), np.bincount(devkit.labels))
    assert _per_class_images(annos) == _per_class_images(devkit)
    assert all(p.startswith("car_ims/") for p in annos.paths)
    split = [p.split("/")[0] for p in devkit.paths]
    assert split == sorted(split, key=["cars_train", "cars_test"].index)  # train images first, then test
    assert [p.name for p in devkit.annotation_files] == ["cars_meta.mat", "cars_train_annos.mat",
                                                         "cars_test_annos_withlabels.mat"]
    _becomes_official(monkeypatch, cars196, tmp_path / "a" / "cars196", annos)


def test_cars_test_annotations_under_devkit(tmp_path):
    root = make_cars(tmp_path, layout="devkit", num_classes=8)
    shutil.move(root / "cars_test_annos_withlabels.mat", root / "devkit" / "cars_test_annos_withlabels.mat")
    assert len(cars196.load(root)) == 24


def test_cars_missing_folder_says_where_and_how(tmp_path):
    with pytest.raises(HarnessError) as excinfo:
        cars196.load(tmp_path / "cars196")
    message = _one_line(excinfo)
    assert str(tmp_path / "cars196") in message and "cars_annos.mat" in message and "devkit" in message
    assert "datasets/cars196/README.md" in message


def test_cars_mat_without_annotations_is_named(tmp_path):
    root = make_cars(tmp_path, num_classes=4)
    savemat(root / "cars_annos.mat", {"class_names": np.array(["a", "b"], dtype=object).reshape(1, -1)})
    with pytest.raises(HarnessError) as excinfo:
        cars196.load(root)
    message = _one_line(excinfo)
    assert str(root / "cars_annos.mat") in message and "annotations" in message


def test_cars_mat_that_does_not_load_is_named(tmp_path):
    root = make_cars(tmp_path, layout="devkit", num_classes=4)
    (root / "devkit" / "cars_train_annos.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(HarnessError) as excinfo:
        cars196.load(root)
    assert str(root / "devkit" / "cars_train_annos.mat") in _one_line(excinfo)


# ---- Stanford Online Products ----------------------------------------------------------------------------------

def test_sop_merges_train_then_test_in_numeric_class_order(tmp_path, monkeypatch):
    root = make_sop(tmp_path)
    images = sop.load(root)
    _check_common(images, sop, count=120, classes=40)
    assert images.root == root / "Stanford_Online_Products"
    assert images.class_names == tuple(str(c) for c in range(1, 41))
    train_rows = len((images.root / "Ebay_train.txt").read_text().splitlines()) - 1
    assert train_rows == 21 * 3 and images.labels[:train_rows].max() == 20  # class 21: official train, test half
    assert np.array_equal(images.labels, np.repeat(np.arange(40), 3))
    _becomes_official(monkeypatch, sop, root, images)


def test_sop_bad_header_names_file_and_line(tmp_path):
    root = make_sop(tmp_path, num_classes=4)
    test_txt = root / "Stanford_Online_Products" / "Ebay_test.txt"
    test_txt.write_text("id class path\n" + "\n".join(test_txt.read_text().splitlines()[1:]) + "\n")
    with pytest.raises(HarnessError) as excinfo:
        sop.load(root)
    message = _one_line(excinfo)
    assert str(test_txt) in message and "line 1" in message


def test_sop_missing_folder_says_how_to_get_it(tmp_path):
    with pytest.raises(HarnessError) as excinfo:
        sop.load(tmp_path / "sop")
    message = _one_line(excinfo)
    assert "Ebay_train.txt" in message and str(tmp_path / "sop") in message and "datasets/sop/" in message


# ---- In-Shop ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("eval_dir", "img_under_Img"), [(True, False), (False, False), (True, True)])
def test_inshop_puts_train_items_first(tmp_path, monkeypatch, eval_dir, img_under_Img):
    root = make_inshop(tmp_path, eval_dir=eval_dir, img_under_Img=img_under_Img)
    images = inshop.load(root)
    _check_common(images, inshop, count=36 * 4, classes=36)
    assert images.trainval_classes == 24
    assert Counter(images.roles.tolist()) == {"train": 96, "query": 24, "gallery": 24}
    train = images.roles == "train"
    assert images.labels[train].max() == 23 and images.labels[~train].min() == 24
    item_of = [p.split("/")[-2] for p in images.paths]
    assert all(images.class_names[label] == item for label, item in zip(images.labels.tolist(), item_of, strict=True))
    numbers = [int(name[3:]) for name in images.class_names]
    assert numbers[:24] == sorted(numbers[:24]) and numbers[24:] == sorted(numbers[24:])
    assert numbers != sorted(numbers)  # the fixture interleaves train and test ids
    for label in range(24, 36):
        assert {"query", "gallery"} <= set(images.roles[images.labels == label].tolist())
    assert all(p.startswith("Img/img/" if img_under_Img else "img/") for p in images.paths)
    assert images.annotation_files[0].parent.name == ("Eval" if eval_dir else "inshop")
    _becomes_official(monkeypatch, inshop, root, images)


def _edit_partition(root: Path, edit) -> Path:
    listing = root / "Eval" / "list_eval_partition.txt"
    lines = listing.read_text().splitlines()
    edit(lines)
    listing.write_text("\n".join(lines) + "\n")
    return listing


def test_inshop_unknown_status_names_file_line_and_status(tmp_path):
    root = make_inshop(tmp_path, train_items=4, test_items=2)
    listing = _edit_partition(root, lambda lines: lines.__setitem__(6, lines[6].rsplit(maxsplit=1)[0] + " val"))
    with pytest.raises(HarnessError) as excinfo:
        inshop.load(root)
    message = _one_line(excinfo)
    assert str(listing) in message and "line 7" in message and "'val'" in message


def test_inshop_count_that_disagrees_is_an_error(tmp_path):
    root = make_inshop(tmp_path, train_items=4, test_items=2)
    _edit_partition(root, lambda lines: lines.pop())
    with pytest.raises(HarnessError, match=r"line 1: says 24 rows, but the file lists 23") as excinfo:
        inshop.load(root)
    _one_line(excinfo)


def test_inshop_item_in_train_and_test_is_an_error(tmp_path):
    root = make_inshop(tmp_path, train_items=4, test_items=2)

    def move_to_query(lines: list[str]) -> None:
        row = next(i for i, line in enumerate(lines[2:], start=2) if line.endswith("train"))
        lines[row] = lines[row][: -len("train")] + "query"

    _edit_partition(root, move_to_query)
    with pytest.raises(HarnessError, match=r"both train and query/gallery") as excinfo:
        inshop.load(root)
    assert re.search(r"item id_\d+", _one_line(excinfo))


def test_inshop_missing_folder_says_where_and_how(tmp_path):
    with pytest.raises(HarnessError) as excinfo:
        inshop.load(tmp_path / "inshop")
    message = _one_line(excinfo)
    assert "list_eval_partition.txt" in message and str(tmp_path / "inshop") in message
    assert "datasets/inshop/README.md" in message


# ---- a researcher's own folder or CSV --------------------------------------------------------------------------

def test_image_folder_orders_numeric_classes_and_recurses(tmp_path):
    root = make_image_folder(tmp_path, num_classes=12)
    (root / "13").mkdir()  # a class folder without images is skipped
    images = folder.load_own(root)
    assert images.name == "own_folder" and images.root == root and len(images) == 36
    assert images.class_names == tuple(str(c) for c in range(1, 13))
    assert all(images.class_names[label] == p.split("/")[0] for p, label in zip(images.paths, images.labels,
                                                                                  strict=True))
    assert any("/nested/" in p for p in images.paths) and not any(p.endswith(".txt") for p in images.paths)
    assert images.official_images is None and images.count_warning() is None and images.annotation_files == ()


def test_csv_set_reads_rows_in_file_order(tmp_path):
    csv_path = make_csv_set(tmp_path, num_classes=10)
    images = folder.load_own(csv_path)
    assert images.name == "own_csv" and images.root == csv_path.parent and len(images) == 30
    assert images.class_names == tuple(f"class_{c:02d}" for c in range(1, 11))
    rows = [line.split(",") for line in csv_path.read_text().splitlines()[1:]]
    assert images.paths == tuple(row[0] for row in rows)
    assert [images.class_names[label] for label in images.labels] == [row[1] for row in rows]
    assert images.annotation_files == (csv_path,) and images.official_classes is None


def test_csv_without_label_column_names_file_and_columns(tmp_path):
    csv_path = tmp_path / "mine.csv"
    csv_path.write_text("path,class\na.jpg,1\n")
    with pytest.raises(HarnessError) as excinfo:
        folder.load_csv(csv_path)
    message = _one_line(excinfo)
    assert str(csv_path) in message and "'label'" in message and "'path', 'class'" in message


def test_csv_row_with_empty_label_names_the_line(tmp_path):
    csv_path = make_csv_set(tmp_path, num_classes=3)
    csv_path.write_text(csv_path.read_text() + "images/x.jpg,,note\n")
    with pytest.raises(HarnessError, match=r"line 11: empty label") as excinfo:
        folder.load_csv(csv_path)
    _one_line(excinfo)


def test_folder_with_one_class_is_an_error(tmp_path):
    root = make_image_folder(tmp_path, num_classes=1)
    with pytest.raises(HarnessError) as excinfo:
        folder.load_folder(root)
    message = _one_line(excinfo)
    assert "1 class" in message and "at least 2" in message


def test_folder_without_images_and_missing_paths_are_errors(tmp_path):
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(HarnessError, match="no images found") as excinfo:
        folder.load_own(tmp_path / "empty")
    _one_line(excinfo)
    for missing in (tmp_path / "nowhere", tmp_path / "nowhere.csv"):
        with pytest.raises(HarnessError, match=re.escape(str(missing))) as excinfo:
            folder.load_own(missing)
        _one_line(excinfo)


def test_corrupt_image_is_not_decodable(tmp_path):
    root = make_image_folder(tmp_path, num_classes=2, per_class=1)
    target = root / "1" / "img_0.jpg"
    assert Image.open(target).size == (50, 38)
    corrupt_image(target)
    with pytest.raises(UnidentifiedImageError):
        Image.open(target)
