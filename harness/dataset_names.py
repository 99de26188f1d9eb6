"""The datasets the harness knows by name, the label a run records and the name check: importing nothing
but the harness's errors, so that `harness --help` lists them without loading torch."""

from __future__ import annotations

from pathlib import Path

from harness.errors import HarnessError

__all__ = ["EMBEDDED", "IMAGE_DATASETS", "TEXT_DATASETS", "EMBEDDED_TEXT", "available_datasets", "dataset_label",
           "check_dataset_name"]

EMBEDDED = "glyphs"
IMAGE_DATASETS = ("cub200", "cars196", "sop", "inshop")
EMBEDDED_TEXT = "wordnet"
TEXT_DATASETS = (EMBEDDED_TEXT,)


def available_datasets() -> list[str]:
    return sorted([EMBEDDED, *IMAGE_DATASETS, *TEXT_DATASETS])


def dataset_label(name: str) -> str:
    """The name records and tables use: a known name, a folder's name or a file's stem."""
    if name in available_datasets():
        return name
    path = Path(name).expanduser().resolve()
    return path.stem if path.is_file() else path.name


def check_dataset_name(name: str) -> None:
    """A known name, or a path to an image folder, an image CSV or a text file that exists."""
    if name in available_datasets():
        return
    if "/" in name or Path(name).suffix in (".csv", ".tsv", ".jsonl") or name.startswith(".") or Path(name).exists():
        if not Path(name).expanduser().exists():
            raise HarnessError(f"dataset path not found: {name} (an image folder with one subfolder per class, a "
                               "CSV with columns path,label, or a text file .csv/.tsv/.jsonl with text,label)")
        return
    raise HarnessError(f"unknown dataset '{name}'; known datasets: {', '.join(available_datasets())} (or a path to "
                       "an image folder with one subfolder per class, a .csv with path,label, or a text set: "
                       ".csv/.tsv/.jsonl with text (or sentence) and label)")
