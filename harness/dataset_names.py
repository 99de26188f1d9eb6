"""The datasets the harness knows by name: outside harness.data and importing nothing, so that
`harness --help` lists them without loading torch."""

from __future__ import annotations

__all__ = ["EMBEDDED", "IMAGE_DATASETS", "available_datasets"]

EMBEDDED = "glyphs"
IMAGE_DATASETS = ("cub200", "cars196", "sop", "inshop")


def available_datasets() -> list[str]:
    return sorted([EMBEDDED, *IMAGE_DATASETS])
