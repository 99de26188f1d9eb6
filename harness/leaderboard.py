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

import numpy as np
import pandas as pd

from harness.atomic import write_atomic
from harness.errors import HarnessError
from harness.evaluate import METRICS, MODES
from harness.per_query import array_name, load_per_query
from harness.protocol import available_protocols, load_protocol
from harness.records import newest_complete_runs
from harness.seeding import derive_seed
from harness.significance import ALPHA, bootstrap_means, compare, difference, holm, ranks, welch

__all__ = ["leaderboard_tables", "write_leaderboards", "table_stem", "compare_losses", "table_of", "table_record",
           "BASELINE", "SIGNIFICANCE_COLUMNS"]

BASELINE = "none"
METRIC_COLUMNS = [f"{mode}_{metric}_{stat}" for mode in MODES for metric in METRICS for stat in ("mean", "ci95")]
# Against the table's best loss (by concatenated MAP@R mean) and within the whole table; see
# harness.significance. Empty for rows whose runs kept no per-query figures (recorded before they were).
SIGNIFICANCE_COLUMNS = ["rank", "tied_with_best", "p_vs_best", "p_welch_vs_best", "diff_vs_best",
                        "diff_vs_best_ci_low", "diff_vs_best_ci_high"]


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
    row.update(_collapse_columns(record))
    row.update({"dataset_version": record["dataset"]["version"], "finished_at": record["finished_at"],
                "git_commit": record["environment"]["git_commit"]})
    return row


def _collapse_columns(record: dict) -> dict:
    """The search trials with a collapsed fold training (JSON list of trial numbers) and the number of
    collapsed test units; empty for runs recorded before trainings were diagnosed."""
    trials = record["search"].get("trials", [])
    units = [fold for rep in record["test"]["reproductions"] for fold in rep.get("folds", [])]
    diagnosed = any(key.endswith("_collapsed") for trial in trials for key in trial) or \
        any("collapsed" in unit for unit in units)
    if not diagnosed:
        return {"collapsed_trials": None, "collapsed_test_units": None}
    collapsed = [t["number"] for t in trials if any(v is True for k, v in t.items() if k.endswith("_collapsed"))]
    return {"collapsed_trials": json.dumps(collapsed),
            "collapsed_test_units": sum(unit.get("collapsed") is True for unit in units)}


def leaderboard_tables(results_dir: Path, *, significance: bool = True) -> dict[str, pd.DataFrame]:
    """Table stem -> one row per loss (its newest complete run), baseline first, then best first.

    A loss is its name and the hash of its source file: a changed loss gets a row of its own
    beside the old one instead of silently replacing it. The significance columns
    (SIGNIFICANCE_COLUMNS) compare the rows whose runs kept their per-query figures; a caller that
    only looks rows up passes significance=False and skips the bootstrap.
    """
    records: dict[str, list[dict]] = {}
    for record in newest_complete_runs(results_dir).values():
        stem = table_stem(record["dataset"]["name"], record["protocol"]["name"], record["protocol_hash"],
                          record["dataset"])
        records.setdefault(stem, []).append(record)
    tables = {}
    for stem, table_records in records.items():
        frame = pd.DataFrame([_row(record) for record in table_records])
        frame["_baseline"] = frame["loss"] != BASELINE
        frame = frame.sort_values(["_baseline", "concatenated_map_at_r_mean"], ascending=[True, False])
        frame = frame.drop(columns="_baseline").reset_index(drop=True)
        if significance:
            by_run = {record["run_id"]: record for record in table_records}
            frame = add_significance(frame, [by_run[run_id] for run_id in frame["run_id"]], Path(results_dir),
                                     seed=derive_seed(0, "bootstrap", stem))
        tables[stem] = frame
    return tables


def _concatenated_ap(record: dict, results_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(relevant [Q], AP@R [reproductions, Q]) of the concatenated embeddings, or None without per-query figures."""
    info = record["test"].get("per_query")
    if info is None:
        return None
    arrays = load_per_query(Path(results_dir) / "runs" / record["run_id"], info)
    reps = [rep["reproduction"] for rep in record["test"]["reproductions"]]
    return arrays["relevant"], np.stack([arrays[array_name(r, "concatenated", "ap_at_r")] for r in reps])


def add_significance(frame: pd.DataFrame, records: list[dict], results_dir: Path, *, seed: int) -> pd.DataFrame:
    """The table with SIGNIFICANCE_COLUMNS: records[i] is the run of frame's row i, best row first
    after the baseline. Every comparison uses the same scored test queries."""
    frame = frame.assign(**{column: np.nan for column in SIGNIFICANCE_COLUMNS})
    frame["tied_with_best"] = frame["tied_with_best"].astype(object)
    figures = {}
    relevant = None
    for i, record in enumerate(records):
        found = _concatenated_ap(record, results_dir)
        if found is None:
            continue
        if relevant is None:
            relevant, first = found[0], record["run_id"]
        elif not np.array_equal(found[0], relevant):
            raise HarnessError(f"runs {first} and {record['run_id']} share a table but not their test queries")
        figures[i] = found[1][:, relevant > 0]
    trained = [i for i in figures if frame.loc[i, "loss"] != BASELINE]
    if len(figures) < 2 or not trained:
        return frame
    best = trained[0]  # the frame is sorted best first
    replicates = bootstrap_means({str(i): figures[i] for i in figures}, seed=seed)
    means = {i: float(figures[i].mean()) for i in figures}
    others = [i for i in figures if i != best]
    tests = {i: difference(replicates[str(i)], replicates[str(best)]) for i in others}
    p_boot = dict(zip(others, holm([tests[i][2] for i in others]), strict=True))
    p_welch = dict(zip(others, holm([welch(figures[i].mean(axis=1), figures[best].mean(axis=1)) for i in others]),
                       strict=True))
    pairs = [(i, j) for i in figures for j in figures if i < j]
    pair_p = {(i, j): difference(replicates[str(i)], replicates[str(j)])[2] for i, j in pairs}
    pair_diff = {(i, j): means[i] - means[j] for i, j in pairs}
    rank = ranks(list(figures), pair_p, pair_diff)
    for i in figures:
        frame.loc[i, "rank"] = rank[i]
        if i == best:
            frame.loc[i, ["diff_vs_best", "diff_vs_best_ci_low", "diff_vs_best_ci_high"]] = 0.0
            frame.at[i, "tied_with_best"] = True
            continue
        low, high, _ = tests[i]
        frame.loc[i, ["p_vs_best", "p_welch_vs_best"]] = p_boot[i], p_welch[i]
        diff = means[i] - means[best]
        frame.loc[i, ["diff_vs_best", "diff_vs_best_ci_low", "diff_vs_best_ci_high"]] = diff, low, high
        frame.at[i, "tied_with_best"] = bool(p_boot[i] >= ALPHA)
    frame["rank"] = frame["rank"].astype("Int64")
    return frame


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


def table_record(results_dir: Path, stem: str, loss: str) -> dict:
    """The record behind a loss's row of table `stem` (its newest complete run)."""
    run_id = _row_of(table_of(results_dir, stem, significance=False), stem, loss)["run_id"]
    return next(r for r in newest_complete_runs(results_dir).values() if r["run_id"] == run_id)


def compare_losses(results_dir: Path, stem: str, loss_a: str, loss_b: str) -> dict:
    """Both rows of table `stem` and A - B in concatenated MAP@R: mean, 95% bootstrap interval, the
    paired bootstrap's and Welch's p (one comparison, so uncorrected)."""
    table = table_of(results_dir, stem, significance=False)
    rows = {loss: _row_of(table, stem, loss) for loss in (loss_a, loss_b)}
    records = {record["run_id"]: record for record in newest_complete_runs(results_dir).values()}
    figures = []
    for loss in (loss_a, loss_b):
        found = _concatenated_ap(records[rows[loss]["run_id"]], results_dir)
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


def write_leaderboards(results_dir: Path, reports_dir: Path, *, redraw: bool = True) -> list[Path]:
    """Regenerate every leaderboard CSV and its pages (harness.report); returns the paths written.
    Without `redraw`, a run's own plot already drawn is reused (after a benchmark, only the new run's
    is drawn)."""
    from harness.citations import cite_block
    from harness.report import write_report

    records = {record["run_id"]: record for record in newest_complete_runs(results_dir).values()}
    written = []
    for stem, frame in sorted(leaderboard_tables(results_dir).items()):
        path = Path(results_dir) / "leaderboard" / f"{stem}.csv"
        write_atomic(path, frame.to_csv(index=False, float_format="%.6f"))
        written.append(path)
        runs = [records[run_id] for run_id in frame["run_id"]]
        cites = {row["loss"]: cite_block(record) for (_, row), record in zip(frame.iterrows(), runs, strict=True)}
        written.extend(write_report(frame, runs, Path(reports_dir), stem, cites, redraw=redraw))
    return written
