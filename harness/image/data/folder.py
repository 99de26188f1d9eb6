"""A researcher's own image set: an image folder (one subfolder per class) or a CSV of `path,label` rows.

Folder layout: `<set>/<class>/**/<image>` with extensions .jpg .jpeg .png .bmp .gif .webp .tif .tiff (any case),
found recursively inside each class folder and sorted; hidden files and folders (".name") are ignored, and a
class folder without images is skipped. CSV layout: a header with at least the columns `path` and `label`
(others are ignored), paths relative to the CSV's folder. The set is named after the folder or the CSV's stem.
The loader guarantees at least 2 classes and that every listed image is on disk.
"""

from __future__ import annotations

import csv
from pathlib import Path, PurePosixPath

from harness.errors import HarnessError
from harness.image.data.listing import ImageList, check_files_exist, class_positions

__all__ = ["IMAGE_EXTENSIONS", "load_folder", "load_csv", "load_own"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


def _image_list(name: str, root: Path, paths: list[str], classes: list[str], annotation_files: tuple[Path, ...],
                source: Path) -> ImageList:
    """Labels by class position (numeric class names numerically), after the checks both layouts share."""
    labels, class_names = class_positions(classes)
    if len(class_names) < 2:
        raise HarnessError(f"{source}: {len(class_names)} class{'' if len(class_names) == 1 else 'es'} found; "
                           "a class-disjoint split needs at least 2")
    images = ImageList(name, root, tuple(paths), labels, class_names, annotation_files)
    check_files_exist(images)
    return images


def load_folder(path: Path) -> ImageList:
    """Every image under each class subfolder, class folders in name order, files sorted within each."""
    path = Path(path)
    if not path.is_dir():
        raise HarnessError(f"{path}: no such folder")
    paths: list[str] = []
    classes: list[str] = []
    for folder in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(file.relative_to(path).as_posix() for file in folder.rglob("*")
                       if file.suffix.lower() in IMAGE_EXTENSIONS and file.is_file()
                       and not any(part.startswith(".") for part in file.relative_to(folder).parts))
        paths += files
        classes += [folder.name] * len(files)
    if not paths:
        raise HarnessError(f"{path}: no images found (expected one subfolder per class holding "
                           f"{', '.join(sorted(IMAGE_EXTENSIONS))} files)")
    return _image_list(path.name, path, paths, classes, (), path)


def load_csv(path: Path) -> ImageList:
    """The rows of a CSV in file order; a row without a path or label names the file and its line number."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"{path}: no such file")
    paths: list[str] = []
    classes: list[str] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            columns = [column.strip() for column in next(reader, [])]
            if "path" not in columns or "label" not in columns:
                raise HarnessError(f"{path}: needs the columns 'path' and 'label'; its header has "
                                   f"{', '.join(repr(c) for c in columns) or 'no columns'}")
            at_path, at_label = columns.index("path"), columns.index("label")
            for row in reader:
                if not row:
                    continue
                image = row[at_path].strip() if at_path < len(row) else ""
                label = row[at_label].strip() if at_label < len(row) else ""
                if not image or not label:
                    raise HarnessError(f"{path}, line {reader.line_num}: empty {'path' if not image else 'label'}")
                if PurePosixPath(image).is_absolute():
                    raise HarnessError(f"{path}, line {reader.line_num}: path {image!r} must be relative to the "
                                       "CSV's folder")
                paths.append(image)
                classes.append(label)
    except (csv.Error, UnicodeDecodeError) as error:
        raise HarnessError(f"{path}: not a readable CSV ({error})") from None
    if not paths:
        raise HarnessError(f"{path}: lists no images")
    return _image_list(path.stem, path.parent, paths, classes, (path,), path)


def load_own(path: Path) -> ImageList:
    """A folder is read as class subfolders, a .csv file as `path,label` rows."""
    path = Path(path)
    if path.is_dir():
        return load_folder(path)
    if path.suffix.lower() == ".csv":
        return load_csv(path)
    if not path.exists():
        raise HarnessError(f"{path}: does not exist")
    raise HarnessError(f"{path}: expected a folder with one subfolder per class, or a .csv file")
