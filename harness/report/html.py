"""The HTML page of a leaderboard table: `reports/<stem>.html`, one self-contained file.

Every plot is embedded as a data URI and the sorting script is inline, so the page opens from a
mail attachment or a reviewer's disk with no network access. It shows what the Markdown page does
(harness.report.content) plus, per loss, its search and training plots and its cite block.
"""

from __future__ import annotations

import base64
import html
import json
import math
from typing import TYPE_CHECKING

import pandas as pd

from harness.baseline import LOSS_ROLE, row_role
from harness.report.content import (
    COLLAPSE_NOTE,
    FIGURE_COLUMNS,
    SIGNIFICANCE_NOTE,
    STALE_NOTE,
    TABLE_NOTE,
    cell,
    collapsed,
    has_baseline_comparison,
    has_significance,
    is_current,
    published,
    row_labels,
    shown_params,
    stale_rows,
    tie_groups,
    vs_baseline,
)

if TYPE_CHECKING:
    from harness.records import RunRecord

__all__ = ["html_page", "loss_anchor"]

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; } h3 { margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 3px 8px; text-align: right; white-space: nowrap; }
th:first-child, td:first-child, td.text { text-align: left; }
thead th { position: sticky; top: 0; background: #f6f6f6; }
th button { font: inherit; font-weight: 600; border: 0; background: none; cursor: pointer; padding: 0; }
th[aria-sort="ascending"] button::after { content: " ▲"; } th[aria-sort="descending"] button::after { content: " ▼"; }
tr.tied td { font-weight: 700; } tbody.baseline td, tbody.floor td { color: #666; font-style: italic; }
tbody.stale td { color: #999; }
.note { color: #555; max-width: 75em; } figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; }
.wide { overflow-x: auto; }
figcaption { color: #555; font-size: 13px; max-width: 75em; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 12px; }
"""

# Sort the first tbody of every sortable table by a clicked column: numbers as numbers (data-value),
# empty cells last in either direction, the untrained baseline and the rows that are not current kept in
# tbodies of their own below.
_SCRIPT = """
document.querySelectorAll("table.sortable thead th").forEach((th, column) => {
  th.querySelector("button").addEventListener("click", () => {
    const table = th.closest("table");
    const body = table.tBodies[0];
    const ascending = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("thead th").forEach((other) => other.removeAttribute("aria-sort"));
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    const key = (row) => row.cells[column].dataset.value;
    const rows = Array.from(body.rows).sort((a, b) => {
      const x = key(a), y = key(b);
      if (x === "" || y === "") return (x === "") - (y === "");
      const order = isNaN(x) || isNaN(y) ? x.localeCompare(y) : Number(x) - Number(y);
      return ascending ? order : -order;
    });
    rows.forEach((row) => body.appendChild(row));
  });
});
"""


def loss_anchor(loss: str) -> str:
    """The id of a loss's section: its name with anything but letters, digits, - and _ as -."""
    return "loss-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in loss)


def _image(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _number(value) -> str:
    """A cell's sort key: the number as text, or empty where it is missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    return repr(float(value))


def _td(text: str, value="", css: str = "") -> str:
    css = f' class="{css}"' if css else ""
    return f'<td{css} data-value="{html.escape(str(value))}">{text}</td>'


def _table(frame: pd.DataFrame) -> str:
    significance = has_significance(frame)
    heads = ["loss"] + (["rank"] if significance else []) + [title for _, title in FIGURE_COLUMNS]
    heads += ["val. MAP@R"] + (["Δ con. MAP@R vs best [95% CI]", "p vs best"] if significance else [])
    baseline = has_baseline_comparison(frame)
    heads += ["con. MAP@R vs none (Δ, p)"] if baseline else []
    heads += ["trials", "reps", "best hyperparameters", "collapsed (trials / test units)"]
    head = "".join(f'<th scope="col"><button type="button">{html.escape(h)}</button></th>' for h in heads)
    bodies: dict[str, list[str]] = {"": [], "stale": [], "baseline": [], "floor": []}
    for label, (_, row) in zip(row_labels(frame), frame.iterrows(), strict=True):
        cells = [_td(f'<a href="#{loss_anchor(row["loss"])}">{html.escape(label)}</a>', label)]
        if significance:
            cells.append(_td("—" if pd.isna(row["rank"]) else str(int(row["rank"])), _number(row["rank"])))
        cells += [_td(cell(row[f"{stem}_mean"], row[f"{stem}_ci95"]), _number(row[f"{stem}_mean"]))
                  for stem, _ in FIGURE_COLUMNS]
        validation = row["best_val_map_at_r"]
        cells.append(_td("—" if pd.isna(validation) else f"{100 * validation:.2f}", _number(validation)))
        if significance:
            diff = row["diff_vs_best"]
            shown = "—" if pd.isna(diff) else \
                f"{100 * diff:+.2f} [{100 * row['diff_vs_best_ci_low']:+.2f}, {100 * row['diff_vs_best_ci_high']:+.2f}]"
            cells.append(_td(shown, _number(diff)))
            p = row["p_vs_best"]
            cells.append(_td("—" if pd.isna(p) else f"{p:.4f}", _number(p)))
        if baseline:
            cells.append(_td(html.escape(vs_baseline(row)), _number(row.get("diff_vs_baseline"))))
        cells += [_td(str(row["trials"]), row["trials"]), _td(str(row["reproductions"]), row["reproductions"])]
        params = shown_params(row["best_params"])
        cells.append(_td(html.escape(params), params, "text"))
        if "collapsed_trials" in row and not pd.isna(row["collapsed_trials"]):
            count = len(json.loads(row["collapsed_trials"]))
            cells.append(_td(f"{count} / {int(row['collapsed_test_units'])}", count))
        else:
            cells.append(_td("—"))
        tied = ' class="tied"' if significance and row["tied_with_best"] is True else ""
        role = row_role(row)
        body = role if role != LOSS_ROLE else "" if is_current(row) else "stale"
        bodies[body].append(f"<tr{tied}>{''.join(cells)}</tr>")
    parts = [f'<div class="wide"><table class="sortable" id="leaderboard"><thead><tr>{head}</tr></thead>',
             f"<tbody>{''.join(bodies[''])}</tbody>"]
    for body in ("baseline", "floor", "stale"):  # below the sorted rows, each in a body of its own
        if bodies[body]:
            parts.append(f'<tbody class="{body}">{"".join(bodies[body])}</tbody>')
    return "".join(parts) + "</table></div>"


def _stale(frame: pd.DataFrame) -> list[str]:
    found = stale_rows(frame)
    if not found:
        return []
    items = "".join(f"<li>{html.escape(label)}: {html.escape(why)}</li>" for label, why in found)
    return ['<h2 id="stale">Not current</h2>', f'<p class="note">{html.escape(STALE_NOTE)}</p>', f"<ul>{items}</ul>"]


def _ties(frame: pd.DataFrame) -> list[str]:
    groups = tie_groups(frame)
    if groups is None:
        return ['<p class="note">No tie groups: no run of this table kept per-query figures.</p>']
    items = [f"<li><strong>Tied with the best</strong>: {html.escape(', '.join(groups['tied']) or '—')}</li>",
             f"<li>Significantly below the best: {html.escape(', '.join(groups['below']) or '—')}</li>"]
    items += [f"<li>{html.escape(name)}: {html.escape(', '.join(losses))}</li>"
              for name, losses in groups.items() if name.startswith("rank ")]
    return ["<h2 id=\"ties\">Tie groups</h2>", f"<ul>{''.join(items)}</ul>"]


def _published(frame: pd.DataFrame) -> list[str]:
    found = published(frame)
    if found is None:
        return []
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["loss", "source"] + [t for _, t in FIGURE_COLUMNS])
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in [loss, source, *cells]) + "</tr>"
                   for loss, source, cells in found.rows)
    return ['<h2 id="published">Published figures</h2>',
            f'<p class="note">{html.escape(found.source)}; means only, in percent, beside this table\'s.</p>',
            f'<table id="published-table"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>']


def _collapsed(frame: pd.DataFrame) -> list[str]:
    found = collapsed(frame)
    if found is None:
        return []
    items = [f"<li>{html.escape(loss)}: search trials {html.escape(', '.join(map(str, trials)) or 'none')}; "
             f"test units {units}</li>" for loss, trials, units in found] or ["<li>none</li>"]
    return ['<h2 id="collapsed">Collapsed trainings</h2>', f'<p class="note">{html.escape(COLLAPSE_NOTE)}</p>',
            f"<ul>{''.join(items)}</ul>"]


def _figure(png: bytes, alt: str, caption: str, name: str) -> str:
    return (f'<figure data-plot="{html.escape(name)}">{_image(png, alt)}'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _loss_sections(frame: pd.DataFrame, records: list[RunRecord], loss_plots: dict[str, bytes],
                   cites: dict[str, str]) -> list[str]:
    parts = ['<h2 id="losses">Per loss</h2>',
             '<p class="note">Each trained loss: its search (every trial\'s mean validation MAP@R over the folds, '
             "the best so far, and the test figure of the best hyperparameters; Optuna's fANOVA importances over "
             "the completed trials) and its test units' trainings with the best hyperparameters (mean and "
             "min-max band over the reproductions × folds): validation MAP@R, FaceNet's diagnostics on the "
             "training batch (the batch-hard loss at margin 0.2 as one yardstick across losses, the share of "
             "active triplets and of anchors whose hardest negative is closer than their hardest positive) and "
             "the spread of the embeddings.</p>"]
    for (_, row), record in zip(frame.iterrows(), records, strict=True):
        loss = row["loss"]
        parts.append(f'<section id="{loss_anchor(loss)}"><h3>{html.escape(loss)}</h3>')
        description = record.loss.get("paper") or record.loss.get("description") or ""
        parts.append(f'<p class="note">{html.escape(description)}. Best hyperparameters: '
                     f"{html.escape(shown_params(row['best_params']))}; run <code>{html.escape(row['run_id'])}</code>."
                     "</p>")
        if row["run_id"] in loss_plots:
            parts.append(_figure(loss_plots[row["run_id"]], f"{loss}: search and training",
                                 f"{loss}: optimisation history, importances and training diagnostics.",
                                 f"loss:{loss}"))
        if loss in cites:
            parts.append(f"<details><summary>Cite {html.escape(loss)}</summary><pre>{html.escape(cites[loss])}</pre>"
                         "</details>")
        parts.append("</section>")
    return parts


def html_page(frame: pd.DataFrame, records: list[RunRecord], table_plots: dict[str, tuple[bytes, str]],
              loss_plots: dict[str, bytes], cites: dict[str, str]) -> str:
    """The page. records[i] is the run of frame's row i; table_plots: name -> (PNG, caption);
    loss_plots: run id -> the loss's PNG (harness.report.plots.loss_chart)."""
    first = frame.iloc[0]
    title = f"{first['dataset']} / protocol {first['protocol']}"
    body = [f"<h1>{html.escape(title)}</h1>",
            f'<p class="note">Protocol hash <code>{html.escape(first["protocol_hash"])}</code>, dataset version '
            f"<code>{html.escape(str(first['dataset_version']))}</code>, {len(frame)} runs. "
            f"{html.escape(TABLE_NOTE)} Click a column's name to sort by it.</p>",
            _table(frame)]
    if has_significance(frame):
        body.append(f'<p class="note">{html.escape(SIGNIFICANCE_NOTE)}</p>')
    body += _ties(frame) + _stale(frame)
    body.append('<h2 id="plots">Test MAP@R</h2>')
    body += [_figure(png, name, caption, name) for name, (png, caption) in table_plots.items()]
    body += _published(frame) + _collapsed(frame) + _loss_sections(frame, records, loss_plots, cites)
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>", f"<style>{_STYLE}</style>", "</head>", "<body>", *body,
        f"<script>{_SCRIPT}</script>", "</body>", "</html>", ""])
