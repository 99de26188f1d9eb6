"""The committed glyphs/quick run records, as real inputs for the report's tests (no training needed)."""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def committed_run(loss: str) -> Path:
    """The newest committed glyphs/quick run directory of this loss."""
    return sorted((REPO / "results" / "runs").glob(f"*__glyphs__quick__{loss}"))[-1]


def copy_committed_runs(losses, results: Path) -> Path:
    """A results folder holding a copy of these losses' committed runs; returns it."""
    for loss in losses:
        run = committed_run(loss)
        shutil.copytree(run, results / "runs" / run.name)
    return results
