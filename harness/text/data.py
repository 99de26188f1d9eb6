"""Text sets: the embedded `wordnet` and a researcher's own .csv, .tsv or .jsonl, as labelled items.

A text set has a `text` (or `sentence`, as sentence-transformers' examples name it) and a `label` column.
Classes are class positions 0..n-1: for `wordnet` in the file's order (synset offset, as it was built),
for a researcher's file in label order. Its version is the sha256 of its rows as read, so a reordered or
edited file is a new version. Bad input is one line naming the file and row, before anything is written.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from harness.dataset_names import EMBEDDED_TEXT, TEXT_DATASETS
from harness.errors import HarnessError

__all__ = ["TextSet", "TextTable", "TEXT_SUFFIXES", "TEXT_COLUMNS", "read_text_table", "locate_text_set",
           "is_text_file", "wordnet_path"]

TEXT_SUFFIXES = (".csv", ".tsv", ".jsonl")
TEXT_COLUMNS = ("text", "sentence")
WORDNET_FILE = "definitions.csv.gz"


@dataclass(frozen=True)
class TextTable:
    """A text set as read: its texts and labels in file order, the class names in class order."""

    name: str
    path: Path
    texts: tuple[str, ...]
    labels: np.ndarray  # class positions
    class_names: tuple[str, ...]
    version: str
    official: bool


@dataclass(frozen=True)
class TextSet:
    """A text set's items for the engine: rows into `features` (the encoder's cache), class positions."""

    name: str
    version: str
    features: object  # harness.text.cache.TextFeatures
    rows: np.ndarray
    labels: torch.Tensor
    class_names: tuple[str, ...]
    texts: tuple[str, ...] = ()  # every text of the set, by row (the TF-IDF floor reads them)
    roles: np.ndarray | None = None
    trainval_classes: int | None = None
    official: bool = True
    details: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    kind = "text"  # its modality (harness.modality)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, classes: Sequence[int]) -> TextSet:
        """Only the items of the given class positions (the search stage gets the trainval subset)."""
        keep = torch.isin(self.labels, torch.as_tensor(list(classes), dtype=self.labels.dtype))
        return replace(self, rows=self.rows[keep.numpy()], labels=self.labels[keep])


def wordnet_path(root: Path) -> Path:
    return Path(root) / EMBEDDED_TEXT / WORDNET_FILE


def is_text_file(name: str) -> bool:
    """A .tsv or .jsonl file, or a .csv whose header names a text column (an image CSV names `path`)."""
    path = Path(name).expanduser()
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".jsonl"):
        return True
    if suffix != ".csv" or not path.is_file():
        return False
    with open(path, "rb") as handle:
        header = handle.readline().decode("utf-8", errors="replace")
    columns = {c.strip().lower() for c in next(csv.reader([header]), [])}
    return bool(columns & set(TEXT_COLUMNS)) and "path" not in columns


def locate_text_set(name: str, root: Path) -> tuple[Path, bool]:
    """(the file, whether it is an embedded set) of a text dataset name or path."""
    if name in TEXT_DATASETS:
        path = wordnet_path(root)
        if not path.is_file():
            raise HarnessError(f"dataset {name}: {path} is missing; it is committed in the repository "
                               f"(datasets/{name}/), or rebuilt with `python -m harness.text.wordnet_build`")
        return path, True
    path = Path(name).expanduser()
    if not path.is_file():
        raise HarnessError(f"text set not found: {name}")
    return path, False


def _decoded_lines(path: Path, data: bytes) -> str:
    """The file as text; a non-UTF-8 line is named."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        for number, line in enumerate(data.split(b"\n"), 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as error:
                raise HarnessError(f"{path}: line {number} is not UTF-8 ({error.reason} at byte {error.start})") \
                    from None
        raise


def _records(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    """(columns, [(line number, row)]) of a .csv, .tsv, .csv.gz or .jsonl file."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    text = _decoded_lines(path, data).lstrip("\ufeff")
    if path.suffix.lower() == ".jsonl" or path.name.lower().endswith(".jsonl.gz"):
        rows, columns = [], []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise HarnessError(f"{path}: line {number} is not a JSON object ({error.msg})") from None
            if not isinstance(row, dict):
                raise HarnessError(f"{path}: line {number} is not a JSON object")
            columns += [c for c in row if c not in columns]
            rows.append((number, row))
        return columns, rows
    delimiter = "\t" if ".tsv" in path.name.lower() else ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    columns = list(reader.fieldnames or [])
    return columns, [(reader.line_num, row) for row in reader]


def read_text_table(path: Path, *, name: str, official: bool, sort_classes: bool) -> TextTable:
    """The (text, label) rows of a text file, checked: the columns, no empty text, and at least 2 classes
    with 2 items (rows of classes with a single item are kept; they are never a query's only answer)."""
    path = Path(path)
    columns, rows = _records(path)
    lowered = {c.strip().lower(): c for c in columns if isinstance(c, str)}
    text_column = next((lowered[c] for c in TEXT_COLUMNS if c in lowered), None)
    label_column = lowered.get("label")
    if text_column is None or label_column is None:
        missing = "a text (or sentence) column" if text_column is None else "a label column"
        raise HarnessError(f"{path}: no {missing}; columns found: {', '.join(map(str, columns)) or 'none'}")
    texts, labels = [], []
    for number, row in rows:
        text, label = row.get(text_column), row.get(label_column)
        if not isinstance(text, str) or not text.strip():
            raise HarnessError(f"{path}: line {number} has an empty {text_column}")
        if label is None or (isinstance(label, str) and not label.strip()):
            raise HarnessError(f"{path}: line {number} has no {label_column}")
        texts.append(text)
        labels.append(str(label))
    names = sorted(set(labels)) if sort_classes else list(dict.fromkeys(labels))
    position = {label: i for i, label in enumerate(names)}
    positions = np.array([position[label] for label in labels], dtype=np.int64)
    counts = np.bincount(positions, minlength=len(names)) if len(names) else np.array([])
    if int((counts >= 2).sum()) < 2:
        raise HarnessError(f"{path}: {int((counts >= 2).sum())} class(es) with at least 2 items; a text set needs "
                           f"at least 2 (it has {len(texts)} rows in {len(names)} classes)")
    digest = hashlib.sha256()
    for text, label in zip(texts, labels, strict=True):
        digest.update(json.dumps([text, label], ensure_ascii=False).encode("utf-8") + b"\n")
    digest.update(json.dumps(names, ensure_ascii=False).encode("utf-8"))  # the class order
    return TextTable(name=name, path=path, texts=tuple(texts), labels=positions, class_names=tuple(names),
                     version=f"{name}-{digest.hexdigest()[:12]}", official=official)
