"""The pages of a leaderboard table, regenerated from its run records only.

`reports/<stem>.md` (Markdown), `reports/<stem>.html` (one self-contained file: plots embedded, no
network) and, in `reports/<stem>/` beside them, the plots as PNGs: `map_at_r.png`,
`validation_vs_test.png` and one `<run id>.png` per trained loss. A run's own plot depends on its
record only, so after a benchmark only the new run's is drawn; `harness leaderboard` redraws all.
Every file is written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from harness.atomic import write_atomic
from harness.baseline import LOSS_ROLE, row_role
from harness.report.html import html_page
from harness.report.markdown import METRIC_TITLES, format_table, markdown_page
from harness.report.plots import loss_chart, map_at_r_chart, validation_vs_test_chart

if TYPE_CHECKING:
    from harness.records import RunRecord

__all__ = ["METRIC_TITLES", "format_table", "write_report", "TABLE_PLOTS"]

# name -> (title, caption) of the table's own plots
TABLE_PLOTS = {
    "map_at_r": ("test MAP@R", "Test MAP@R of every loss, separated and concatenated, mean and 95% CI over "
                 "reproductions; bold names are tied with the best."),
    "validation_vs_test": ("validation vs test MAP@R", "Does the search overfit its validation folds? The best "
                           "trial's mean validation MAP@R against the test MAP@R (sep.) of the same "
                           "hyperparameters; a changed order between the axes is what overfitting looks "
                           "like (validation windows are smaller than the test half, so the levels differ)."),
}


def write_report(frame: pd.DataFrame, records: list[RunRecord], reports_dir: Path, stem: str,
                 cites: dict[str, str] | None = None, *, redraw: bool = True) -> list[Path]:
    """Write the table's pages and plots; records[i] is the run of frame's row i. Without `redraw`, a
    run's plot already on disk is reused. Plots of runs no longer in the table are removed."""
    reports_dir = Path(reports_dir)
    plots_dir = reports_dir / stem
    drawn = {"map_at_r": map_at_r_chart(frame), "validation_vs_test": validation_vs_test_chart(frame)}
    written = []
    for name, png in drawn.items():
        write_atomic(plots_dir / f"{name}.png", png)
        written.append(plots_dir / f"{name}.png")
    loss_plots = {}
    for (_, row), record in zip(frame.iterrows(), records, strict=True):
        if row_role(row) != LOSS_ROLE:  # the baseline and the floors train nothing
            continue
        path = plots_dir / f"{record.run_id}.png"
        if redraw or not path.exists():
            loss_plots[record.run_id] = loss_chart(record)
            write_atomic(path, loss_plots[record.run_id])
        else:
            loss_plots[record.run_id] = path.read_bytes()
        written.append(path)
    for stale in set(plots_dir.glob("*.png")) - set(written):
        stale.unlink()
    cites = cites or {}
    markdown = markdown_page(frame, {TABLE_PLOTS[name][0]: f"{stem}/{name}.png" for name in drawn},
                             {run_id: f"{stem}/{run_id}.png" for run_id in loss_plots}, f"{stem}.html", cites)
    page = html_page(frame, records, {name: (png, TABLE_PLOTS[name][1]) for name, png in drawn.items()},
                     loss_plots, cites)
    for path, text in ((reports_dir / f"{stem}.md", markdown), (reports_dir / f"{stem}.html", page)):
        write_atomic(path, text)
        written.append(path)
    return written
