"""The reference rows of a table and their names: one place, imports nothing.

`none` is a row of every table (the network as initialised, no training, no search), so the name is
shared by the benchmark, the tables and the reports; keeping it here, in a module that imports
nothing of the harness, lets each of them use it without importing one another.

A modality may add floors (text: `tfidf`, harness.text.floor): scores without any network, fitted on
the search half, in a block of their own. A row's role says which it is: "baseline", "floor", or "loss"
for every trained row, which alone are ranked against the best.
"""

from __future__ import annotations

__all__ = ["BASELINE", "BASELINE_ROLE", "FLOOR_ROLE", "LOSS_ROLE", "baseline_loss", "baseline_search",
           "floor_loss", "is_baseline", "role_of", "row_role", "trained_mask"]

BASELINE = "none"
BASELINE_ROLE, FLOOR_ROLE, LOSS_ROLE = "baseline", "floor", "loss"


def is_baseline(loss_name: str) -> bool:
    return loss_name == BASELINE


def baseline_loss() -> dict:
    """The record's loss section for the baseline: no code runs, so no identity."""
    return {"name": BASELINE, "role": BASELINE_ROLE, "description": "the network as initialised, no training",
            "identity": None}


def floor_loss(name: str, description: str, identity: str) -> dict:
    """The record's loss section for a floor: its identity is its own code's."""
    return {"name": name, "role": FLOOR_ROLE, "description": description, "identity": identity}


def role_of(loss: dict) -> str:
    """A record's loss section -> its row's role (records made before roles: by the name)."""
    return loss.get("role") or (BASELINE_ROLE if is_baseline(loss["name"]) else LOSS_ROLE)


def baseline_search() -> dict:
    """The record's search section for the baseline and the floors: nothing searched."""
    return {"study": None, "storage": None, "trials_counted": 0, "best_params": {}, "best_value": None,
            "best_trial": None, "trials": []}


def row_role(row) -> str:
    """A table row's role (a dict or a pandas row; a table written before roles: by the loss name)."""
    role = row.get("role")
    if isinstance(role, str):
        return role
    return BASELINE_ROLE if is_baseline(row["loss"]) else LOSS_ROLE


def trained_mask(frame):
    """Which rows of a table (a pandas frame) are trained losses, not reference rows: a bool Series on its index."""
    return frame.index.to_series().map(lambda i: row_role(frame.loc[i]) == LOSS_ROLE).astype(bool)
