"""A leaderboard table as a paper prints it: `harness table --format latex|markdown|csv`.

Test figures in percent, mean ± 95% CI over reproductions; the losses tied with the best in bold
(where the runs kept per-query figures, see harness.significance); the untrained baseline and the
paper's published figures, where they exist, in blocks of their own, labelled.
"""

from __future__ import annotations

import math

import pandas as pd

from harness.errors import HarnessError
from harness.evaluate import METRICS, MODES
from harness.leaderboard import BASELINE, SIGNIFICANCE_COLUMNS
from harness.report.markdown import METRIC_TITLES, format_table

__all__ = ["FORMATS", "select_losses", "paper_table"]

FORMATS = ("latex", "markdown", "csv")
_FIGURES = [(mode, metric) for mode in MODES for metric in METRICS]


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
        columns = ["loss", *[f"{mode}_{m}_{s}" for mode, m in _FIGURES for s in ("mean", "ci95")]]
        columns += [c for c in SIGNIFICANCE_COLUMNS if c in frame] + ["reproductions", "run_id", "protocol_hash"]
        return frame[columns].to_csv(index=False, float_format="%.6f")
    if fmt == "latex":
        return _latex(frame)
    raise HarnessError(f"unknown format '{fmt}'; known: {', '.join(FORMATS)}")


def _percent(mean: float, ci95: float) -> str:
    if ci95 is None or (isinstance(ci95, float) and math.isnan(ci95)):
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} $\\pm$ {100 * ci95:.2f}"


def _escape(text: str) -> str:
    return text.replace("\\", "\\textbackslash{}").replace("_", "\\_").replace("&", "\\&").replace("%", "\\%")


def _latex(frame: pd.DataFrame) -> str:
    from harness.reference import PUBLISHED_SOURCE, published_figures

    first = frame.iloc[0]
    tied = frame["tied_with_best"] if "tied_with_best" in frame else pd.Series([None] * len(frame))
    heads = " & ".join(f"{mode[:3]}. {METRIC_TITLES[m]}" for mode, m in _FIGURES)
    lines = [
        f"% harness table: {first['dataset']} / {first['protocol']} (protocol hash {first['protocol_hash']})",
        "% needs \\usepackage{booktabs}",
        "\\begin{tabular}{l" + "c" * len(_FIGURES) + "}",
        "\\toprule",
        f"Loss & {heads} \\\\",
        "\\midrule",
    ]

    def row_line(row: pd.Series, bold: bool) -> str:
        cells = [_percent(row[f"{mode}_{m}_mean"], row[f"{mode}_{m}_ci95"]) for mode, m in _FIGURES]
        name = _escape(str(row["loss"]))
        if bold:
            name, cells = f"\\textbf{{{name}}}", [f"\\textbf{{{c}}}" for c in cells]
        return " & ".join([name, *cells]) + " \\\\"

    baseline = frame[frame["loss"] == BASELINE]
    trained = frame[frame["loss"] != BASELINE]
    for i, row in trained.iterrows():
        lines.append(row_line(row, tied[i] is True))
    if not baseline.empty:
        lines.append("\\midrule")
        lines.append(row_line(baseline.iloc[0], False).replace(BASELINE, "untrained", 1))
    published = (published_figures(str(first["dataset"])).set_index("loss")
                 if str(first["protocol"]).startswith("reality_check") else None)
    shown = [] if published is None else [loss for loss in trained["loss"] if loss in published.index]
    if shown:
        lines.append("\\midrule")
        lines.append(f"\\multicolumn{{{1 + len(_FIGURES)}}}{{l}}{{\\emph{{Published ({_escape(PUBLISHED_SOURCE)}), "
                     "means only}}} \\\\")
        for loss in shown:
            cells = [f"{100 * published.loc[loss, f'{mode}_{m}']:.2f}" for mode, m in _FIGURES]
            lines.append(" & ".join([_escape(loss), *cells]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    if tied.notna().any():
        lines.append("% bold: tied with the best loss (two-level paired bootstrap of con. MAP@R, Holm-corrected, "
                     "alpha = 0.05)")
    return "\n".join(lines) + "\n"
