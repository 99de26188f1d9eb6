"""The report's plots, drawn from a leaderboard table and its run records only.

Every function returns a PNG's bytes. Figures are made without pyplot (no global state) and saved
without a timestamp, so the same records draw the same bytes and `make leaderboard` leaves an
unchanged report unchanged.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from harness.baseline import trained_mask
from harness.diagnostics import YARDSTICK_MARGIN
from harness.report.importance import completed_trials, param_importances

if TYPE_CHECKING:
    from harness.records import RunRecord

__all__ = ["map_at_r_chart", "validation_vs_test_chart", "loss_chart", "unit_histories"]

MODE_COLOURS = {"separated": "#4c72b0", "concatenated": "#dd8452"}
FOLD_COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]
DPI = 80


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def map_at_r_chart(frame: pd.DataFrame) -> bytes:
    """Test MAP@R, separated and concatenated, mean with its 95% CI: one horizontal pair of bars per
    loss, best at the top and the untrained network at the bottom, so the labels stay readable with
    the whole zoo. Losses tied with the best
    (where the table has significance columns) have bold labels; a dotted line marks the best con. mean."""
    reference = ~trained_mask(frame)
    rows = pd.concat([frame[~reference], frame[reference]]).iloc[::-1].reset_index(drop=True)
    fig = Figure(figsize=(8, 1.2 + 0.34 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    positions = np.arange(len(rows))
    height = 0.4
    for offset, mode in ((height / 2, "separated"), (-height / 2, "concatenated")):
        means = 100 * rows[f"{mode}_map_at_r_mean"].to_numpy(dtype=float)
        errors = 100 * rows[f"{mode}_map_at_r_ci95"].astype(float).fillna(0).to_numpy()
        ax.barh(positions + offset, means, height, xerr=errors, color=MODE_COLOURS[mode], label=f"{mode[:3]}.",
                error_kw={"elinewidth": 0.8, "capsize": 2})
    ax.set_yticks(positions, rows["loss"])
    tied = rows["tied_with_best"] if "tied_with_best" in rows else pd.Series([None] * len(rows))
    for label, is_tied in zip(ax.get_yticklabels(), tied, strict=True):
        if is_tied is True:
            label.set_fontweight("bold")
    trained = frame[trained_mask(frame)]
    if len(trained):
        ax.axvline(100 * trained["concatenated_map_at_r_mean"].max(), color="0.3", linestyle=":", linewidth=1,
                   label="best con.")
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel("test MAP@R (%), mean ± 95% CI over reproductions")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def validation_vs_test_chart(frame: pd.DataFrame) -> bytes:
    """Each trained loss's best search value (mean validation MAP@R over the folds) against its test
    MAP@R (separated: one fold model at a time, like validation). Validation windows are smaller than
    the test half, so the levels differ; a search that overfits its folds shows as losses whose order
    changes from one axis to the other (Spearman's rho in the title)."""
    from scipy.stats import spearmanr

    rows = frame[trained_mask(frame) & frame["best_val_map_at_r"].notna()]
    fig = Figure(figsize=(6.5, 5), layout="constrained")
    ax = fig.add_subplot()
    x = 100 * rows["best_val_map_at_r"].to_numpy(dtype=float)
    y = 100 * rows["separated_map_at_r_mean"].to_numpy(dtype=float)
    errors = 100 * rows["separated_map_at_r_ci95"].astype(float).fillna(0).to_numpy()
    ax.errorbar(x, y, yerr=errors, fmt="o", color=MODE_COLOURS["separated"], markersize=4, elinewidth=0.8)
    for loss, xi, yi in zip(rows["loss"], x, y, strict=True):
        ax.annotate(loss, (xi, yi), xytext=(3, 3), textcoords="offset points", fontsize=7)
    if len(rows):
        low, high = min(x.min(), y.min()), max(x.max(), y.max())
        ax.plot([low, high], [low, high], linestyle="--", color="0.6", linewidth=1, label="test = validation")
        ax.legend(loc="upper left", fontsize=8)
    title = "best trial's validation vs test MAP@R"
    if len(rows) >= 3:
        title += f" (Spearman ρ = {spearmanr(x, y).statistic:.2f}, {len(rows)} losses)"
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("validation MAP@R (%), best trial, mean over folds")
    ax.set_ylabel("test MAP@R (%), sep.")
    ax.grid(alpha=0.3)
    return _png(fig)


def unit_histories(record: RunRecord) -> pd.DataFrame:
    """One row per validation step of every test unit (the trainings with the best hyperparameters):
    reproduction, fold, iteration and what the step recorded; empty for runs recorded without it."""
    rows = [{"reproduction": rep["reproduction"], "fold": unit["fold"], **step}
            for rep in record.test["reproductions"] for unit in rep.get("folds", [])
            for step in unit.get("history", [])]
    return pd.DataFrame(rows)


def _not_recorded(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"{what}\nnot recorded", ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _history(ax, record: RunRecord) -> None:
    """Each completed trial's value, the best so far, the pruned trials' running means, and the test
    figure of the best hyperparameters."""
    trials = completed_trials(record)
    if not trials:
        _not_recorded(ax, "search trials")
        return
    numbers = np.array([t["number"] for t in trials])
    values = 100 * np.array([t["value"] for t in trials])
    ax.plot(numbers, values, "o", color=MODE_COLOURS["separated"], markersize=4, label="trial")
    ax.step(numbers, np.maximum.accumulate(values), where="post", color="0.2", linewidth=1, label="best so far")
    pruned = [t for t in record.search["trials"] if t.get("state") == "PRUNED"]
    folds = [[v for k, v in t.items() if k.endswith("_val_map_at_r")] for t in pruned]
    shown = [(t["number"], 100 * np.mean(f)) for t, f in zip(pruned, folds, strict=True) if f]
    if shown:
        ax.plot(*zip(*shown, strict=True), "x", color="0.5", label="pruned (folds run)")
    ax.axhline(100 * record.test["summary"]["separated_map_at_r"]["mean"], color=MODE_COLOURS["concatenated"],
               linestyle=":", label="test, sep.")
    ax.set_title("optimisation history", fontsize=9)
    ax.set_xlabel("trial")
    ax.set_ylabel("val. MAP@R (%), mean over folds")
    ax.legend(fontsize=7)


def _importances(ax, record: RunRecord) -> None:
    importances = param_importances(record)
    if importances is None:
        _not_recorded(ax, "importances (needs the search space\nand two trials of different values)")
        return
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names], color=MODE_COLOURS["separated"])
    ax.set_xlim(0, 1)
    ax.set_title(f"hyperparameter importance (fANOVA, {len(completed_trials(record))} trials)", fontsize=9)
    ax.tick_params(axis="y", labelsize=8)


def _band(ax, steps: pd.DataFrame, column: str, label: str, colour: str, linestyle: str = "-",
          scale: float = 1.0) -> None:
    """The mean over the test units at each iteration, and the band from their minimum to maximum."""
    stats = steps.groupby("iteration")[column].agg(["mean", "min", "max"])
    ax.plot(stats.index, scale * stats["mean"], color=colour, linestyle=linestyle, label=label)
    ax.fill_between(stats.index, scale * stats["min"], scale * stats["max"], color=colour, alpha=0.15, linewidth=0)


def _training(axes, record: RunRecord) -> None:
    """Validation MAP@R per fold, and FaceNet's diagnostics (harness.diagnostics) over training."""
    steps = unit_histories(record)
    if steps.empty or "batch_hard_loss" not in steps:
        for ax, what in zip(axes, ("validation over training", "batch-hard yardstick", "triplet fractions",
                                   "embedding spread"), strict=True):
            _not_recorded(ax, what)
        return
    validation, yardstick, fractions, spread = axes
    for fold, of_fold in steps.groupby("fold"):
        _band(validation, of_fold, "val_map_at_r", f"fold {fold}", FOLD_COLOURS[int(fold) % len(FOLD_COLOURS)],
              scale=100)
    validation.set_title("validation MAP@R over training", fontsize=9)
    validation.set_ylabel("MAP@R (%)")
    validation.legend(fontsize=7)
    _band(yardstick, steps, "batch_hard_loss", "batch-hard loss", FOLD_COLOURS[0])
    yardstick.axhline(YARDSTICK_MARGIN, color="0.5", linestyle="--", linewidth=1, label="margin (stuck)")
    yardstick.set_title(f"batch-hard yardstick (margin {YARDSTICK_MARGIN})", fontsize=9)
    yardstick.set_ylim(bottom=0)
    yardstick.legend(fontsize=7)
    _band(fractions, steps, "active_triplets", "active triplets", FOLD_COLOURS[1])
    _band(fractions, steps, "hardest_negative_closer", "hardest neg. closer", FOLD_COLOURS[2], linestyle="--")
    fractions.set_ylim(0, 1.02)
    fractions.set_title("share of the batch", fontsize=9)
    fractions.legend(fontsize=7)
    _band(spread, steps, "mean_pairwise_distance", "mean pairwise distance", FOLD_COLOURS[3])
    _band(spread, steps, "top_pc_variance", "top-PC variance share", FOLD_COLOURS[4], linestyle="--")
    spread.set_ylim(bottom=0)
    spread.set_title("embedding spread", fontsize=9)
    spread.legend(fontsize=7)
    for ax in axes:
        ax.set_xlabel("iteration")


def loss_chart(record: RunRecord) -> bytes:
    """One trained loss on one page: its search (optimisation history against the test figure,
    hyperparameter importances) and its test units' trainings (validation MAP@R per fold, the
    batch-hard yardstick, the triplet fractions, the embedding spread; mean and min-max band over
    the units)."""
    fig = Figure(figsize=(13, 6.4))
    # fixed margins instead of a layout engine: a third of the drawing time, for one chart per loss
    axes = fig.subplots(2, 3, gridspec_kw={"left": 0.06, "right": 0.99, "bottom": 0.08, "top": 0.9,
                                           "wspace": 0.25, "hspace": 0.4}).ravel()
    _history(axes[0], record)
    _importances(axes[1], record)
    _training(axes[2:], record)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    fig.suptitle(f"{record.loss['name']}: search and training ({record.run_id})", fontsize=10)
    return _png(fig)
