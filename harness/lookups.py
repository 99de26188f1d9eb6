"""Looking up one table, one row, one row's record, or two rows' difference (cite, compare, table).

Lookups never run the table-wide bootstrap: `compare_losses` runs the one comparison it is asked for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.records import RunRecord, newest_complete_runs
from harness.seeding import derive_seed
from harness.significance import compare
from harness.tables import concatenated_ap, leaderboard_tables

__all__ = ["table_of", "table_record", "compare_losses"]


def table_of(results_dir: Path, stem: str, *, significance: bool = True) -> pd.DataFrame:
    """Table `stem`; a missing one lists the tables there are."""
    tables = leaderboard_tables(results_dir, significance=significance)
    if stem not in tables:
        known = ", ".join(sorted(tables)) or "none"
        raise HarnessError(f"no leaderboard table {stem} under {results_dir}; tables: {known}")
    return tables[stem]


def _row_of(table: pd.DataFrame, stem: str, loss: str) -> dict:
    """A loss's row of the table; a missing one lists the table's losses."""
    matches = table[table["loss"] == loss]
    if matches.empty:
        raise HarnessError(f"table {stem} has no row for loss '{loss}'; its losses: {', '.join(table['loss'])}")
    return matches.iloc[0].to_dict()


def table_record(results_dir: Path, stem: str, loss: str) -> RunRecord:
    """The record behind a loss's row of table `stem` (its newest complete run)."""
    run_id = _row_of(table_of(results_dir, stem, significance=False), stem, loss)["run_id"]
    return next(r for r in newest_complete_runs(results_dir).values() if r.run_id == run_id)


def compare_losses(results_dir: Path, stem: str, loss_a: str, loss_b: str) -> dict:
    """Both rows of table `stem` and A - B in concatenated MAP@R: mean, 95% bootstrap interval, the
    paired bootstrap's and Welch's p (one comparison, so uncorrected)."""
    table = table_of(results_dir, stem, significance=False)
    rows = {loss: _row_of(table, stem, loss) for loss in (loss_a, loss_b)}
    records = {record.run_id: record for record in newest_complete_runs(results_dir).values()}
    figures = []
    for loss in (loss_a, loss_b):
        found = concatenated_ap(records[rows[loss]["run_id"]], results_dir)
        if found is None:
            raise HarnessError(f"the run of '{loss}' ({rows[loss]['run_id']}) kept no per-query figures (recorded "
                               "before they were); rerun it to compare it")
        figures.append(found)
    if not np.array_equal(figures[0][0], figures[1][0]):
        raise HarnessError(f"'{loss_a}' and '{loss_b}' were not scored on the same test queries")
    scored = figures[0][0] > 0
    a, b = figures[0][1][:, scored], figures[1][1][:, scored]
    result = compare(a, b, seed=derive_seed(0, "bootstrap", stem, loss_a, loss_b))
    return {"rows": rows, "diff": result.diff, "ci_low": result.ci_low, "ci_high": result.ci_high,
            "p_bootstrap": result.p_bootstrap, "p_welch": result.p_welch, "queries": int(scored.sum()),
            "reproductions": (len(a), len(b))}
