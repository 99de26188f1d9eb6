"""The Markdown page of a leaderboard table: `reports/<stem>.md`, with the plots beside it."""

from __future__ import annotations

import pandas as pd

from harness.report.content import (
    COLLAPSE_NOTE,
    FIGURE_COLUMNS,
    METRIC_TITLES,
    SIGNIFICANCE_NOTE,
    STALE_NOTE,
    TABLE_NOTE,
    cell,
    collapsed,
    has_baseline_comparison,
    has_significance,
    published,
    row_labels,
    shown_params,
    stale_rows,
    vs_baseline,
)

__all__ = ["METRIC_TITLES", "format_table", "format_stale", "format_collapsed", "format_published", "format_cites",
           "markdown_page"]


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(cells) + " |" for cells in rows]


def format_table(frame: pd.DataFrame) -> str:
    """A Markdown table: one row per loss, test figures in percent (mean ± 95% CI). Where the runs
    kept per-query figures, a rank column, and the losses tied with the best in bold."""
    significance = has_significance(frame)
    header = ["loss"] + [title for _, title in FIGURE_COLUMNS] + ["trials", "reps", "best hyperparameters"]
    header += ["rank"] if significance else []
    baseline = has_baseline_comparison(frame)
    header += ["con. MAP@R vs none (Δ, p)"] if baseline else []
    rows = []
    for label, (_, row) in zip(row_labels(frame), frame.iterrows(), strict=True):
        if significance and row["tied_with_best"] is True:
            label = f"**{label}**"
        cells = [label] + [cell(row[f"{stem}_mean"], row[f"{stem}_ci95"]) for stem, _ in FIGURE_COLUMNS]
        cells += [str(row["trials"]), str(row["reproductions"]), shown_params(row["best_params"])]
        if significance:
            cells.append("—" if pd.isna(row["rank"]) else str(int(row["rank"])))
        if baseline:
            cells.append(vs_baseline(row))
        rows.append(cells)
    return "\n".join(_markdown_table(header, rows))


def format_collapsed(frame: pd.DataFrame) -> str | None:
    """Which losses had trainings whose embeddings collapsed (harness.diagnostics), None where no run
    was diagnosed."""
    found = collapsed(frame)
    if found is None:
        return None
    lines = [f"- {loss}: search trials {', '.join(map(str, trials)) or 'none'}; test units {units}"
             for loss, trials, units in found]
    return COLLAPSE_NOTE + "\n\n" + ("\n".join(lines) if lines else "- none")


def format_stale(frame: pd.DataFrame) -> str | None:
    """The rows that are not current, each with why; None where every row is current."""
    found = stale_rows(frame)
    if not found:
        return None
    return "## Not current\n\n" + STALE_NOTE + "\n\n" + "\n".join(f"- {label}: {why}" for label, why in found)


def format_published(frame: pd.DataFrame) -> str | None:
    """Our row and the paper's, one under the other (harness.report.content.published)."""
    found = published(frame)
    if found is None:
        return None
    header = ["loss", "source"] + [title for _, title in FIGURE_COLUMNS]
    return "\n".join([f"Published figures ({found.source}; means only) beside this table's, in percent:", "",
                      *_markdown_table(header, [[loss, source, *cells] for loss, source, cells in found.rows])])


def format_cites(cites: dict[str, str]) -> str:
    """A folded cite block per row (harness.citations.cite_block), as `harness cite` prints it."""
    parts = ["## Cite", "", "Per row: how to rerun it, what it ran on, and BibTeX (also `harness cite LOSS`).", ""]
    for loss, block in cites.items():
        parts += [f"<details><summary>{loss}</summary>", "", "```text", block, "```", "", "</details>", ""]
    return "\n".join(parts)


def markdown_page(frame: pd.DataFrame, plots: dict[str, str], loss_plots: dict[str, str], html_page: str,
                  cites: dict[str, str] | None) -> str:
    """The whole page. Paths are relative to the page: `plots` maps a table plot's title to its PNG,
    `loss_plots` a run id to its loss's PNG, `html_page` is the HTML page."""
    first = frame.iloc[0]
    page = [f"# {first['dataset']} / protocol {first['protocol']}", "",
            f"Protocol hash `{first['protocol_hash']}`. {TABLE_NOTE} The same table with every plot, sortable: "
            f"[{html_page}]({html_page}).", "", format_table(frame), ""]
    if has_significance(frame):
        page += [SIGNIFICANCE_NOTE, ""]
    page += _markdown_table(["loss", "run_id", "search and training"], [
        [row["loss"], f"`{row['run_id']}`", f"[plot]({loss_plots[row['run_id']]})" if row["run_id"] in loss_plots
         else "—"] for _, row in frame.iterrows()])
    page += [""] + [f"![{title}]({path})" for title, path in plots.items()] + [""]
    for section in (format_stale(frame), format_collapsed(frame), format_published(frame),
                    cites and format_cites(cites)):
        if section:
            page += [section, ""]
    return "\n".join(page)
