"""A leaderboard table as a paper prints it: `harness table --format latex|markdown|csv`.

Test figures in percent, mean ± 95% CI over reproductions; the losses tied with the best in bold
(where the runs kept per-query figures, see harness.significance); the untrained baseline and the
paper's published figures, where they exist, in blocks of their own, labelled.
"""

from __future__ import annotations

import pandas as pd

from harness.baseline import BASELINE, trained_mask
from harness.errors import HarnessError
from harness.report.content import FIGURE_COLUMNS, cell, published
from harness.report.markdown import format_table
from harness.tables import SIGNIFICANCE_COLUMNS

__all__ = ["FORMATS", "select_losses", "paper_table"]

FORMATS = ("latex", "markdown", "csv")


def select_losses(frame: pd.DataFrame, losses: list[str] | None) -> pd.DataFrame:
    """The rows of these losses, in the table's order; an unknown name lists the table's losses."""
    if not losses:
        return frame
    unknown = [loss for loss in losses if loss not in set(frame["loss"])]
    if unknown:
        raise HarnessError(f"not in this table: {', '.join(unknown)}; its losses: {', '.join(frame['loss'])}")
    return frame[frame["loss"].isin(losses)].reset_index(drop=True)


def paper_table(frame: pd.DataFrame, fmt: str) -> str:
    """The table in `fmt` (one of FORMATS)."""
    if fmt == "markdown":
        return format_table(frame)
    if fmt == "csv":
        columns = ["loss", *[f"{stem}_{s}" for stem, _ in FIGURE_COLUMNS for s in ("mean", "ci95")]]
        columns += [c for c in SIGNIFICANCE_COLUMNS if c in frame] + ["reproductions", "run_id", "protocol_hash"]
        return frame[columns].to_csv(index=False, float_format="%.6f")
    if fmt == "latex":
        return _latex(frame)
    raise HarnessError(f"unknown format '{fmt}'; known: {', '.join(FORMATS)}")


def _escape(text: str) -> str:
    return text.replace("\\", "\\textbackslash{}").replace("_", "\\_").replace("&", "\\&").replace("%", "\\%")


def _latex(frame: pd.DataFrame) -> str:
    first = frame.iloc[0]
    tied = frame["tied_with_best"] if "tied_with_best" in frame else pd.Series([None] * len(frame))
    heads = " & ".join(title for _, title in FIGURE_COLUMNS)
    lines = [
        f"% harness table: {first['dataset']} / {first['protocol']} (protocol hash {first['protocol_hash']})",
        "% needs \\usepackage{booktabs}",
        "\\begin{tabular}{l" + "c" * len(FIGURE_COLUMNS) + "}",
        "\\toprule",
        f"Loss & {heads} \\\\",
        "\\midrule",
    ]

    def row_line(row: pd.Series, bold: bool) -> str:
        cells = [cell(row[f"{stem}_mean"], row[f"{stem}_ci95"]).replace("±", "$\\pm$") for stem, _ in FIGURE_COLUMNS]
        name = _escape(str(row["loss"]))
        if bold:
            name, cells = f"\\textbf{{{name}}}", [f"\\textbf{{{c}}}" for c in cells]
        return " & ".join([name, *cells]) + " \\\\"

    trained = trained_mask(frame)
    for i, row in frame[trained].iterrows():
        lines.append(row_line(row, tied[i] is True))
    if (~trained).any():  # the baseline, then the floors
        lines.append("\\midrule")
        for _, row in frame[~trained].iterrows():
            lines.append(row_line(row, False).replace(BASELINE, "untrained", 1) if row["loss"] == BASELINE
                         else row_line(row, False))
    found = published(frame)
    if found is not None:
        lines.append("\\midrule")
        lines.append(f"\\multicolumn{{{1 + len(FIGURE_COLUMNS)}}}{{l}}{{\\emph{{Published ({_escape(found.source)}), "
                     "means only}}} \\\\")
        for loss, source, cells in found.rows:
            if source == "published":
                name = "untrained" if loss == BASELINE else _escape(loss)
                lines.append(" & ".join([name, *cells]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    if tied.notna().any():
        lines.append("% bold: tied with the best loss (two-level paired bootstrap of con. MAP@R, Holm-corrected, "
                     "alpha = 0.05)")
    return "\n".join(lines) + "\n"
