"""The untrained baseline's name and what stands for its loss and search: one place, imports nothing.

`none` is a row of every table (the network as initialised, no training, no search), so the name is
shared by the benchmark, the tables and the reports; keeping it here, in a module that imports
nothing of the harness, lets each of them use it without importing one another.
"""

from __future__ import annotations

__all__ = ["BASELINE", "baseline_loss", "baseline_search", "is_baseline"]

BASELINE = "none"


def is_baseline(loss_name: str) -> bool:
    return loss_name == BASELINE


def baseline_loss() -> dict:
    """The record's loss section for the baseline: no code runs, so no identity."""
    return {"name": BASELINE, "description": "the network as initialised, no training", "identity": None}


def baseline_search() -> dict:
    """The record's search section for the baseline: nothing searched."""
    return {"study": None, "storage": None, "trials_counted": 0, "best_params": {}, "best_value": None,
            "best_trial": None, "trials": []}
