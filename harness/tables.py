"""Leaderboard tables built from run records, as pure data: one table per (dataset, protocol hash).

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

from harness.baseline import BASELINE_ROLE, FLOOR_ROLE, LOSS_ROLE, role_of
from harness.errors import HarnessError
from harness.evaluate import METRICS, MODES
from harness.per_query import array_name, load_per_query
from harness.protocol import available_protocols, load_protocol
from harness.records import RunRecord, newest_complete_runs
from harness.run_key import RunKey
from harness.seeding import derive_seed
from harness.significance import ALPHA, bootstrap_means, difference, holm, ranks, welch

__all__ = ["leaderboard_tables", "table_stem", "concatenated_ap", "SIGNIFICANCE_COLUMNS", "Currency"]
METRIC_COLUMNS = [f"{mode}_{metric}_{stat}" for mode in MODES for metric in METRICS for stat in ("mean", "ci95")]
# Against the table's best loss (by concatenated MAP@R mean), within the whole table, and against the
# untrained baseline (does training beat the network off the shelf?); see harness.significance. Empty for
# rows whose runs kept no per-query figures (recorded before they were).
SIGNIFICANCE_COLUMNS = ["rank", "tied_with_best", "p_vs_best", "p_welch_vs_best", "diff_vs_best",
                        "diff_vs_best_ci_low", "diff_vs_best_ci_high", "diff_vs_baseline", "p_vs_baseline",
                        "beats_baseline"]


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


class Currency:
    """Whether a row's loss identity is the identity of the loss's code as it stands here (computed once
    per loss while tables are built): a row made by other code is stale, and says why."""

    def __init__(self) -> None:
        self._now: dict[tuple[str, str], tuple[str | None, str | None]] = {}

    def _identity_now(self, loss: str, role: str) -> tuple[str | None, str | None]:
        """(identity of the code as it stands here, None) or (None, why it has none), once per (role, name)."""
        if (role, loss) not in self._now:
            if role == FLOOR_ROLE:
                from harness.modality import floor_named

                found = floor_named(loss)
                self._now[role, loss] = (found.identity(), None) if found else (None, "the floor is not in this code")
            else:
                import losses

                try:
                    self._now[role, loss] = losses.identity(loss), None
                except Exception as error:  # a plug-in that is gone or broken here: its rows cannot be current
                    self._now[role, loss] = None, f"the loss cannot be loaded here ({type(error).__name__}: {error})"
        return self._now[role, loss]

    def stale_reason(self, key: RunKey, role: str = LOSS_ROLE) -> str | None:
        """None if the row is current, else why not, in words."""
        if role == BASELINE_ROLE:
            return None
        if key.loss_identity is None:
            return "recorded before loss identities (schema 1); rerun it to key it to its code"
        now, problem = self._identity_now(key.loss, role)
        if problem:
            return problem
        if now != key.loss_identity:
            return f"the loss's code changed since (identity {key.loss_identity[:12]} in the record, {now[:12]} now)"
        return None


def _row(record: RunRecord, currency: Currency) -> dict:
    summary = record.test["summary"]
    role = role_of(record.loss)
    stale = currency.stale_reason(record.key, role)
    row = {
        "dataset": record.key.dataset,
        "protocol": record.key.protocol_name,
        "protocol_hash": record.protocol_hash,
        "loss": record.key.loss,
        "role": role,
        "loss_class": record.loss.get("class"),
        "loss_identity": record.key.loss_identity,
        "current": stale is None,
        "stale_reason": stale,
        "run_id": record.run_id,
        "trials": record.search["trials_counted"],
        "reproductions": len(record.test["reproductions"]),
        "best_params": json.dumps(record.search["best_params"], sort_keys=True),
        "best_val_map_at_r": record.search["best_value"],
    }
    for mode in MODES:
        for metric in METRICS:
            figure = summary[f"{mode}_{metric}"]
            row[f"{mode}_{metric}_mean"] = figure["mean"]
            row[f"{mode}_{metric}_ci95"] = figure["ci95"]
    row.update(_collapse_columns(record))
    row.update({"dataset_version": record.key.dataset_version, "finished_at": record.finished_at,
                "git_commit": record.environment.get("git_commit")})
    return row


def _collapse_columns(record: RunRecord) -> dict:
    """The search trials with a collapsed fold training (JSON list of trial numbers) and the number of
    collapsed test units; empty for runs recorded before trainings were diagnosed."""
    trials = record.search.get("trials", [])
    units = [fold for rep in record.test["reproductions"] for fold in rep.get("folds", [])]
    diagnosed = any(key.endswith("_collapsed") for trial in trials for key in trial) or \
        any("collapsed" in unit for unit in units)
    if not diagnosed:
        return {"collapsed_trials": None, "collapsed_test_units": None}
    collapsed = [t["number"] for t in trials if any(v is True for k, v in t.items() if k.endswith("_collapsed"))]
    return {"collapsed_trials": json.dumps(collapsed),
            "collapsed_test_units": sum(unit.get("collapsed") is True for unit in units)}


def leaderboard_tables(results_dir: Path, *, runs: dict[RunKey, RunRecord] | None = None,
                       significance: bool = True) -> dict[str, pd.DataFrame]:
    """Table stem -> one row per run key (its newest complete run): the baseline first, then the floors,
    then the rows that are current best first, then the stale ones (made by code that has changed since).

    A loss is its name and the identity of its code: a changed loss gets a row of its own beside the
    old one instead of silently replacing it, and the old one reads `current` False with its reason.
    The significance columns (SIGNIFICANCE_COLUMNS) compare the current rows whose runs kept their
    per-query figures; a caller that only looks rows up passes significance=False and skips the
    bootstrap. `runs` (newest_complete_runs) saves reading the records again.
    """
    records: dict[str, list[RunRecord]] = {}
    for record in (runs if runs is not None else newest_complete_runs(results_dir)).values():
        stem = table_stem(record.key.dataset, record.key.protocol_name, record.protocol_hash, record.dataset)
        records.setdefault(stem, []).append(record)
    currency = Currency()
    tables = {}
    for stem, table_records in records.items():
        frame = pd.DataFrame([_row(record, currency) for record in table_records])
        order = {BASELINE_ROLE: 0, FLOOR_ROLE: 1}
        frame["_order"] = [order.get(role, 2 if current else 3)
                           for role, current in zip(frame["role"], frame["current"], strict=True)]
        frame = frame.sort_values(["_order", "concatenated_map_at_r_mean"], ascending=[True, False], kind="stable")
        frame = frame.drop(columns="_order").reset_index(drop=True)
        if significance:
            by_run = {record.run_id: record for record in table_records}
            frame = add_significance(frame, [by_run[run_id] for run_id in frame["run_id"]], Path(results_dir),
                                     seed=derive_seed(0, "bootstrap", stem))
        tables[stem] = frame
    return tables


def concatenated_ap(record: RunRecord, results_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(relevant [Q], AP@R [reproductions, Q]) of the concatenated embeddings, or None without per-query figures."""
    info = record.test.get("per_query")
    if info is None:
        return None
    arrays = load_per_query(Path(results_dir) / "runs" / record.run_id, info)
    reps = [rep["reproduction"] for rep in record.test["reproductions"]]
    return arrays["relevant"], np.stack([arrays[array_name(r, "concatenated", "ap_at_r")] for r in reps])


def add_significance(frame: pd.DataFrame, records: list[RunRecord], results_dir: Path, *, seed: int) -> pd.DataFrame:
    """The table with SIGNIFICANCE_COLUMNS: records[i] is the run of frame's row i, best trained row
    first after the baseline and the floors. Every comparison uses the same scored test queries; stale rows
    take no part. Against the best, the trained rows and the floors are Holm-corrected together; against the
    baseline, every other row (a family of its own)."""
    frame = frame.assign(**{column: np.nan for column in SIGNIFICANCE_COLUMNS})
    frame["tied_with_best"] = frame["tied_with_best"].astype(object)
    figures = {}
    relevant = None
    for i, record in enumerate(records):
        found = concatenated_ap(record, results_dir) if frame.loc[i, "current"] else None
        if found is None:
            continue
        if relevant is None:
            relevant, first = found[0], record.run_id
        elif not np.array_equal(found[0], relevant):
            raise HarnessError(f"runs {first} and {record.run_id} share a table but not their test queries")
        figures[i] = found[1][:, relevant > 0]
    trained = [i for i in figures if frame.loc[i, "role"] == LOSS_ROLE]
    if len(figures) < 2:
        return frame
    replicates = bootstrap_means({str(i): figures[i] for i in figures}, seed=seed)
    means = {i: float(figures[i].mean()) for i in figures}
    _against_baseline(frame, figures, replicates, means)
    if not trained:
        return frame
    best = trained[0]  # the frame is sorted best first
    others = [i for i in figures if i != best]
    tests = {i: difference(replicates[str(i)], replicates[str(best)]) for i in others}
    p_boot = dict(zip(others, holm([tests[i][2] for i in others]), strict=True))
    welch_p = {i: welch(figures[i].mean(axis=1), figures[best].mean(axis=1)) for i in others}
    testable = [i for i in others if not np.isnan(welch_p[i])]  # a floor has one reproduction: no Welch test
    p_welch = {i: np.nan for i in others} | dict(zip(testable, holm([welch_p[i] for i in testable]), strict=True))
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


def _against_baseline(frame: pd.DataFrame, figures: dict, replicates: dict, means: dict) -> None:
    """diff_vs_baseline, p_vs_baseline (Holm over every other row) and beats_baseline (significantly above
    it) for every row with per-query figures, where the table has a current baseline row."""
    frame["beats_baseline"] = frame["beats_baseline"].astype(object)
    baseline = next((i for i in figures if frame.loc[i, "role"] == BASELINE_ROLE), None)
    if baseline is None:
        return
    others = [i for i in figures if i != baseline]
    p = dict(zip(others, holm([difference(replicates[str(i)], replicates[str(baseline)])[2] for i in others]),
                 strict=True))
    for i in others:
        diff = means[i] - means[baseline]
        frame.loc[i, ["diff_vs_baseline", "p_vs_baseline"]] = diff, p[i]
        frame.at[i, "beats_baseline"] = bool(p[i] < ALPHA and diff > 0)


