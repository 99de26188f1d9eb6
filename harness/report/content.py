"""What every page of a leaderboard table says, whatever its format: figure cells, tie groups, the
published figures beside ours, the collapsed trainings and the notes that explain them.

The Markdown and HTML pages (harness.report.markdown, harness.report.html) only render these.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pandas as pd

from harness.baseline import FLOOR_ROLE, row_role, trained_mask
from harness.evaluate import METRICS, MODES

__all__ = ["has_baseline_comparison", "vs_baseline",
           "METRIC_TITLES", "FIGURE_COLUMNS", "SIGNIFICANCE_NOTE", "COLLAPSE_NOTE", "TABLE_NOTE", "cell",
           "has_significance", "shown_params", "row_labels", "tie_groups", "Published", "published", "collapsed",
           "STALE_NOTE", "is_current", "stale_rows"]

METRIC_TITLES = {"precision_at_1": "P@1", "r_precision": "R-Prec", "map_at_r": "MAP@R"}
# (column stem, header) of the six test figures, in table order
FIGURE_COLUMNS = [(f"{mode}_{m}", f"{mode[:3]}. {METRIC_TITLES[m]}") for mode in MODES for m in METRICS]

TABLE_NOTE = (
    "Test figures in percent, mean ± 95% Student-t half-width over reproductions; sep. scores each fold "
    "model alone (averaged), con. the four fold models' embeddings joined. none is the network as "
    "initialised, untrained; a floor (text: tfidf) scores without any network, fitted on the search half, "
    "once (no seed, so one reproduction and no CI). Regenerated from the run records by make leaderboard; "
    "each row's run_id names its record under results/runs/.")
SIGNIFICANCE_NOTE = (
    "Ties: losses in bold are tied with the best (by con. MAP@R mean). Each loss is compared with the best by "
    "a two-level paired bootstrap of the difference in con. MAP@R (10,000 resamples: reproductions drawn with "
    "replacement for each loss, then the same test queries for both), Holm-corrected over the comparisons with "
    "the best, α = 0.05; tied means a corrected p ≥ α. Welch's t-test over reproductions is in the CSV as a "
    "second opinion: with 3 reproductions it has almost no power, which is why the test queries carry the "
    "test. rank = 1 + the number of losses significantly better (all pairs, Holm-corrected together). "
    "vs none: con. MAP@R minus the untrained network's, in points, with the same bootstrap's p Holm-corrected "
    "over every row; * marks a row significantly above it. "
    "Rows marked — have no per-query figures (recorded before they were kept).")
STALE_NOTE = (
    "Not current: these rows were made by other code than the loss's as it stands (its identity, the hash of "
    "the code it runs, differs), so they are kept for reference below the others, take no part in ranks and "
    "ties, and a rerun (make zoo skips only current rows) replaces them:")
COLLAPSE_NOTE = (
    "Collapsed trainings (embeddings within 1e-3 of one point, or the batch-hard yardstick stuck at its "
    "margin; the trials keep their scores):")


def cell(mean: float, ci95: float | None) -> str:
    """Percent with its 95% half-width, as papers print them."""
    if ci95 is None or (isinstance(ci95, float) and math.isnan(ci95)):
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} ± {100 * ci95:.2f}"


def has_significance(frame: pd.DataFrame) -> bool:
    return "rank" in frame and frame["rank"].notna().any()


def shown_params(best_params: str) -> str:
    """A row's best hyperparameters (the CSV's JSON) as `name=value, ...`, floats to 4 digits."""
    params = json.loads(best_params)
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()) or "—"


def is_current(row: pd.Series) -> bool:
    """Whether the row was made by the loss's code as it stands (tables without the column: yes)."""
    return bool(row.get("current", True))


def row_labels(frame: pd.DataFrame) -> list[str]:
    """Each row's loss name; the same loss made by other code (two rows) gets its identity, a floor says
    it is one, and a row that is not current says so."""
    repeated = set(frame["loss"][frame["loss"].duplicated()])
    return [row["loss"] + (f" (id {str(row.get('loss_identity'))[:8]})" if row["loss"] in repeated else "")
            + (" (floor)" if row_role(row) == FLOOR_ROLE else "")
            + ("" if is_current(row) else " (not current)") for _, row in frame.iterrows()]


def has_baseline_comparison(frame: pd.DataFrame) -> bool:
    """Whether the table compares its rows with the untrained baseline (harness.tables)."""
    return "p_vs_baseline" in frame and bool(frame["p_vs_baseline"].notna().any())


def vs_baseline(row: pd.Series) -> str:
    """A row's con. MAP@R minus the baseline's in points, with its Holm-corrected p; * where significantly above."""
    if pd.isna(row.get("p_vs_baseline")):
        return "—"
    star = "*" if row.get("beats_baseline") is True else ""
    return f"{100 * row['diff_vs_baseline']:+.2f}{star} (p {row['p_vs_baseline']:.4f})"


def stale_rows(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """(label, why) of every row that is not current (harness.tables.Currency), in table order."""
    return [(label, str(row["stale_reason"])) for label, (_, row) in zip(row_labels(frame), frame.iterrows(),
                                                                        strict=True) if not is_current(row)]


def tie_groups(frame: pd.DataFrame) -> dict[str, list[str]] | None:
    """`tied`: the losses tied with the best (the best first), `below`: those significantly below it,
    and one `rank N` entry per rank; None where the table has no significance columns."""
    if not has_significance(frame):
        return None
    trained = frame[trained_mask(frame) & frame["rank"].notna()]
    groups = {"tied": list(trained.loc[trained["tied_with_best"] == True, "loss"]),  # noqa: E712 (object column)
              "below": list(trained.loc[trained["tied_with_best"] == False, "loss"])}  # noqa: E712
    for rank, losses in trained.groupby("rank", sort=True)["loss"]:
        groups[f"rank {int(rank)}"] = list(losses)
    return groups


@dataclass(frozen=True)
class Published:
    """The table's rows the paper also reports, ours then the paper's, figure cells in FIGURE_COLUMNS order."""

    source: str
    rows: list[tuple[str, str, list[str]]]  # (loss, "harness (<protocol>)" or "published", cells)


def published(frame: pd.DataFrame) -> Published | None:
    """Our row and the paper's, one under the other, for every loss of the table the paper reports on
    this dataset; None when the table is not a reality_check protocol or nothing is published."""
    from harness.reference import PUBLISHED_SOURCE, published_figures

    first = frame.iloc[0]
    if not str(first["protocol"]).startswith("reality_check"):
        return None
    figures = published_figures(str(first["dataset"])).set_index("loss")
    rows = []
    for _, row in frame.iterrows():
        if row["loss"] not in figures.index:
            continue
        rows.append((row["loss"], f"harness ({first['protocol']})",
                     [cell(row[f"{stem}_mean"], row[f"{stem}_ci95"]) for stem, _ in FIGURE_COLUMNS]))
        rows.append((row["loss"], "published",
                     [f"{100 * figures.loc[row['loss'], stem]:.2f}" for stem, _ in FIGURE_COLUMNS]))
    return Published(PUBLISHED_SOURCE, rows) if rows else None


def collapsed(frame: pd.DataFrame) -> list[tuple[str, list[int], int]] | None:
    """(loss, search trials with a collapsed fold training, collapsed test units) for every loss that
    had one; None where no run of the table was diagnosed (recorded before trainings were)."""
    if "collapsed_trials" not in frame or frame["collapsed_trials"].isna().all():
        return None
    found = []
    for _, row in frame.iterrows():
        if pd.isna(row["collapsed_trials"]):
            continue
        trials = json.loads(row["collapsed_trials"])
        if trials or row["collapsed_test_units"]:
            found.append((row["loss"], trials, int(row["collapsed_test_units"])))
    return found
