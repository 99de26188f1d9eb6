"""Publishing: every table's CSV and its pages (harness.report) written from the run records.

The tables are built once (with their bootstrap) and returned, so a caller that also prints one
(the end of `harness benchmark`) never builds them a second time.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.atomic import write_atomic
from harness.citations import cite_block
from harness.records import newest_complete_runs
from harness.report import write_report
from harness.tables import leaderboard_tables

__all__ = ["publish", "write_leaderboards"]


def publish(results_dir: Path, reports_dir: Path, *, redraw: bool = True) -> dict[str, pd.DataFrame]:
    """Regenerate every leaderboard CSV and its pages; returns the tables by stem.
    Without `redraw`, a run's own plot already drawn is reused (after a benchmark, only the new run's
    is drawn)."""
    return _write(results_dir, reports_dir, redraw=redraw)[0]


def write_leaderboards(results_dir: Path, reports_dir: Path, *, redraw: bool = True) -> list[Path]:
    """As `publish`, returning the paths written (`harness leaderboard` prints them)."""
    return _write(results_dir, reports_dir, redraw=redraw)[1]


def _write(results_dir: Path, reports_dir: Path, *, redraw: bool) -> tuple[dict[str, pd.DataFrame], list[Path]]:
    runs = newest_complete_runs(results_dir)
    records = {record.run_id: record for record in runs.values()}
    tables = leaderboard_tables(results_dir, runs=runs)
    written = []
    for stem, frame in sorted(tables.items()):
        path = Path(results_dir) / "leaderboard" / f"{stem}.csv"
        write_atomic(path, frame.to_csv(index=False, float_format="%.6f"))
        written.append(path)
        table_runs = [records[run_id] for run_id in frame["run_id"]]
        cites = {row["loss"]: cite_block(record) for (_, row), record in zip(frame.iterrows(), table_runs, strict=True)}
        written.extend(write_report(frame, table_runs, Path(reports_dir), stem, cites, redraw=redraw))
    return tables, written
