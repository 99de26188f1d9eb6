"""Leaderboard CSVs regenerated from the run records: one table per (dataset, protocol hash).

A table only ever holds runs of one protocol hash. The table of a shipped protocol as it stands
now is `<dataset>__<protocol>.csv`; runs of an older or overridden version of it (other trials,
seed, settings) go to `<dataset>__<protocol>__<hash12>.csv`, so they are kept but never mixed in.
Nor do dataset versions mix: a copy that differs from the official counts (or a researcher's own
set) gets `__data-<version hash>` appended, so its rows never share a table with the official copy's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from harness.atomic import write_atomic
from harness.errors import HarnessError
from harness.evaluate import METRICS, MODES
from harness.protocol import available_protocols, load_protocol
from harness.records import newest_complete_runs

__all__ = ["leaderboard_tables", "write_leaderboards", "table_stem", "BASELINE"]

BASELINE = "none"
METRIC_COLUMNS = [f"{mode}_{metric}_{stat}" for mode in MODES for metric in METRICS for stat in ("mean", "ci95")]


def table_stem(dataset: str, protocol_name: str, protocol_hash: str, dataset_info: dict | None = None) -> str:
    """The table's file stem: the dataset and the shipped protocol as it stands now (its effective
    settings for this dataset), else with the hash; with the data version when not the official copy."""
    current = None
    if protocol_name in available_protocols():
        try:
            current = load_protocol(protocol_name, dataset=dataset).hash
        except HarnessError:
            current = None
    stem = f"{dataset}__{protocol_name}" if protocol_hash == current else \
        f"{dataset}__{protocol_name}__{protocol_hash[:12]}"
    if dataset_info and dataset_info.get("official", True) is False:
        stem += "__data-" + str(dataset_info["version"]).rsplit("-", 1)[-1][:12]
    return stem


def _row(record: dict) -> dict:
    summary = record["test"]["summary"]
    row = {
        "dataset": record["dataset"]["name"],
        "protocol": record["protocol"]["name"],
        "protocol_hash": record["protocol_hash"],
        "loss": record["loss"]["name"],
        "loss_class": record["loss"].get("class"),
        "loss_source_sha256": record["loss"].get("source_sha256"),
        "run_id": record["run_id"],
        "trials": record["search"]["trials_counted"],
        "reproductions": len(record["test"]["reproductions"]),
        "best_params": json.dumps(record["search"]["best_params"], sort_keys=True),
        "best_val_map_at_r": record["search"]["best_value"],
    }
    for mode in MODES:
        for metric in METRICS:
            figure = summary[f"{mode}_{metric}"]
            row[f"{mode}_{metric}_mean"] = figure["mean"]
            row[f"{mode}_{metric}_ci95"] = figure["ci95"]
    row.update({"dataset_version": record["dataset"]["version"], "finished_at": record["finished_at"],
                "git_commit": record["environment"]["git_commit"]})
    return row


def leaderboard_tables(results_dir: Path) -> dict[str, pd.DataFrame]:
    """Table stem -> one row per loss (its newest complete run), baseline first, then best first.

    A loss is its name and the hash of its source file: a changed loss gets a row of its own
    beside the old one instead of silently replacing it.
    """
    rows: dict[str, list[dict]] = {}
    for record in newest_complete_runs(results_dir).values():
        stem = table_stem(record["dataset"]["name"], record["protocol"]["name"], record["protocol_hash"],
                          record["dataset"])
        rows.setdefault(stem, []).append(_row(record))
    tables = {}
    for stem, table_rows in rows.items():
        frame = pd.DataFrame(table_rows)
        frame["_baseline"] = frame["loss"] != BASELINE
        frame = frame.sort_values(["_baseline", "concatenated_map_at_r_mean"], ascending=[True, False])
        tables[stem] = frame.drop(columns="_baseline").reset_index(drop=True)
    return tables


def write_leaderboards(results_dir: Path, reports_dir: Path) -> list[Path]:
    """Regenerate every leaderboard CSV and its report; returns the paths written."""
    from harness.report import write_report

    written = []
    for stem, frame in sorted(leaderboard_tables(results_dir).items()):
        path = Path(results_dir) / "leaderboard" / f"{stem}.csv"
        write_atomic(path, frame.to_csv(index=False, float_format="%.6f"))
        written.append(path)
        written.extend(write_report(frame, Path(reports_dir), stem))
    return written
