"""Human-readable comparison: a Markdown table per leaderboard and a plot of MAP@R with its CI."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pandas as pd

from harness.atomic import write_atomic
from harness.evaluate import METRICS, MODES

__all__ = ["format_table", "write_report"]

METRIC_TITLES = {"precision_at_1": "P@1", "r_precision": "R-Prec", "map_at_r": "MAP@R"}


def _cell(mean: float, ci95: float) -> str:
    """Percent with its 95% half-width, as papers print them."""
    if ci95 is None or (isinstance(ci95, float) and math.isnan(ci95)):
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} ± {100 * ci95:.2f}"


def _has_significance(frame: pd.DataFrame) -> bool:
    return "rank" in frame and frame["rank"].notna().any()


def format_table(frame: pd.DataFrame) -> str:
    """A Markdown table: one row per loss, test figures in percent (mean ± 95% CI). Where the runs
    kept per-query figures, a rank column, and the losses tied with the best in bold."""
    significance = _has_significance(frame)
    header = ["loss"] + [f"{mode[:3]}. {METRIC_TITLES[m]}" for mode in MODES for m in METRICS]
    header += ["trials", "reps", "best hyperparameters"] + (["rank"] if significance else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    repeated = set(frame["loss"][frame["loss"].duplicated()])
    for _, row in frame.iterrows():
        label = row["loss"]
        if label in repeated:  # the same loss with changed source: tell the rows apart
            label += f" (src {str(row.get('loss_source_sha256'))[:8]})"
        if significance and row["tied_with_best"] is True:
            label = f"**{label}**"
        cells = [label]
        cells += [_cell(row[f"{mode}_{m}_mean"], row[f"{mode}_{m}_ci95"]) for mode in MODES for m in METRICS]
        params = json.loads(row["best_params"])
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
        cells += [str(row["trials"]), str(row["reproductions"]), shown or "—"]
        if significance:
            cells.append("—" if pd.isna(row["rank"]) else str(int(row["rank"])))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


SIGNIFICANCE_NOTE = (
    "Ties: **bold** losses are tied with the best (by con. MAP@R mean). Each loss is compared with the best by a "
    "two-level paired bootstrap of the difference in con. MAP@R (10,000 resamples: reproductions drawn with "
    "replacement for each loss, then the same test queries for both), Holm-corrected over the comparisons with "
    "the best, α = 0.05; tied means a corrected p ≥ α. Welch's t-test over reproductions is in the CSV as a "
    "second opinion: with 3 reproductions it has almost no power, which is why the test queries carry the "
    "test. `rank` = 1 + the number of losses significantly better (all pairs, Holm-corrected together). "
    "Rows marked — have no per-query figures (recorded before they were kept).")


def format_collapsed(frame: pd.DataFrame) -> str | None:
    """Which losses had trainings whose embeddings collapsed (harness.diagnostics), None where no run
    was diagnosed."""
    if "collapsed_trials" not in frame or frame["collapsed_trials"].isna().all():
        return None
    lines = []
    for _, row in frame.iterrows():
        if pd.isna(row["collapsed_trials"]):
            continue
        trials = json.loads(row["collapsed_trials"])
        if trials or row["collapsed_test_units"]:
            lines.append(f"- {row['loss']}: search trials {', '.join(map(str, trials)) or 'none'}; "
                         f"test units {int(row['collapsed_test_units'])}")
    return "Collapsed trainings (embeddings within 1e-3 of one point, or the batch-hard yardstick stuck at " \
        "its margin; the trials keep their scores):\n\n" + ("\n".join(lines) if lines else "- none")


def format_published(frame: pd.DataFrame) -> str | None:
    """Our row and the paper's, one under the other, for every loss of the table the paper reports on
    this dataset; None when the table is not a reality_check protocol or nothing is published."""
    from harness.reference import PUBLISHED_SOURCE, published_figures

    first = frame.iloc[0]
    if not str(first["protocol"]).startswith("reality_check"):
        return None
    published = published_figures(str(first["dataset"])).set_index("loss")
    shown = [row for _, row in frame.iterrows() if row["loss"] in published.index]
    if not shown:
        return None
    header = ["loss", "source"] + [f"{mode[:3]}. {METRIC_TITLES[m]}" for mode in MODES for m in METRICS]
    lines = [f"Published figures ({PUBLISHED_SOURCE}; means only) beside this table's, in percent:", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in shown:
        ours = [_cell(row[f"{mode}_{m}_mean"], row[f"{mode}_{m}_ci95"]) for mode in MODES for m in METRICS]
        theirs = [f"{100 * published.loc[row['loss'], f'{mode}_{m}']:.2f}" for mode in MODES for m in METRICS]
        lines.append("| " + " | ".join([row["loss"], f"harness ({first['protocol']})", *ours]) + " |")
        lines.append("| " + " | ".join([row["loss"], "published", *theirs]) + " |")
    return "\n".join(lines)


def _plot(frame: pd.DataFrame) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(frame) + 2), 3.5))
    positions = range(len(frame))
    width = 0.38
    for offset, mode in ((-width / 2, "separated"), (width / 2, "concatenated")):
        means = 100 * frame[f"{mode}_map_at_r_mean"].to_numpy(dtype=float)
        errors = 100 * frame[f"{mode}_map_at_r_ci95"].fillna(0).to_numpy(dtype=float)
        ax.bar([p + offset for p in positions], means, width, yerr=errors, capsize=3, label=mode)
    ax.set_xticks(list(positions), frame["loss"], rotation=30, ha="right")
    ax.set_ylabel("test MAP@R (%)")
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def format_cites(cites: dict[str, str]) -> str:
    """A folded cite block per row (harness.citations.cite_block), as `harness cite` prints it."""
    parts = ["## Cite", "", "Per row: how to rerun it, what it ran on, and BibTeX (also `harness cite LOSS`).", ""]
    for loss, block in cites.items():
        parts += [f"<details><summary>{loss}</summary>", "", "```text", block, "```", "", "</details>", ""]
    return "\n".join(parts)


def write_report(frame: pd.DataFrame, reports_dir: Path, stem: str,
                 cites: dict[str, str] | None = None) -> list[Path]:
    first = frame.iloc[0]
    markdown = "\n".join([
        f"# {first['dataset']} / protocol {first['protocol']}",
        "",
        f"Protocol hash `{first['protocol_hash']}`. Test figures in percent, mean ± 95% Student-t half-width "
        "over reproductions; `sep.` scores each fold model alone (averaged), `con.` the four fold models' "
        "embeddings joined. `none` is the network as initialised, untrained. Regenerated from the run "
        "records by `make leaderboard`; each row's `run_id` names its record under `results/runs/`.",
        "",
        format_table(frame),
        "",
        *([SIGNIFICANCE_NOTE, ""] if _has_significance(frame) else []),
        "| loss | run_id |",
        "|---|---|",
        *[f"| {row['loss']} | `{row['run_id']}` |" for _, row in frame.iterrows()],
        "",
        f"![test MAP@R]({stem}.png)",
        "",
    ])
    collapsed = format_collapsed(frame)
    if collapsed:
        markdown += "\n" + collapsed + "\n"
    published = format_published(frame)
    if published:
        markdown += "\n" + published + "\n"
    if cites:
        markdown += "\n" + format_cites(cites)
    md_path, png_path = reports_dir / f"{stem}.md", reports_dir / f"{stem}.png"
    write_atomic(md_path, markdown)
    write_atomic(png_path, _plot(frame))
    return [md_path, png_path]
