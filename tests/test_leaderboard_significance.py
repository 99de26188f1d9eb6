"""The leaderboard's significance columns, from records with per-query figures (made up here)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from record_factory import made_up_identity, make_record, save

import losses
from harness.evaluate import METRICS
from harness.metrics import hits_to_figures
from harness.per_query import pack, write_per_query
from harness.records import RunRecord
from harness.tables import SIGNIFICANCE_COLUMNS, leaderboard_tables

QUERIES = 1500


R = 3


def make_run(results, loss: str, hits: np.ndarray | None, finished: str, collapsed: bool = False) -> RunRecord:
    """A complete record whose concatenated hits are hits [reproductions, QUERIES, R] (None: none kept)."""
    run_id = f"{finished}__made__up__{loss}"
    relevant = np.full(QUERIES, R, dtype=np.int32)
    reps = [hits_to_figures(h, relevant)[1] for h in hits] if hits is not None else [np.full(QUERIES, 0.3)] * 3
    figures = [{m: float(row.mean()) for m in METRICS} for row in reps]
    diagnosed = hits is not None  # an old record (no per-query figures) has no diagnostics either
    trials = [{"number": n, **({"fold0_collapsed": collapsed and n == 1, "fold1_collapsed": False} if diagnosed
                               else {})} for n in range(2)]
    reproductions = [{"reproduction": r, "separated": figures[r], "concatenated": figures[r],
                      "folds": [{"fold": 0, **({"collapsed": collapsed and r == 2} if diagnosed else {})}]}
                     for r in range(len(reps))]
    per_query = ({"per_query": write_per_query(results / "runs" / run_id, pack(
        relevant, {(r, "concatenated"): h for r, h in enumerate(hits)}))} if hits is not None else {})
    return save(results, make_record(run_id, loss, dataset="made", dataset_version="made-v1", protocol_hash="f" * 64,
                                     finished_at=finished, reproductions=reproductions, test_extra=per_query,
                                     search={"trials_counted": 2, "best_params": {}, "best_value": 0.5,
                                             "trials": trials}, environment={"git_commit": None}))


@pytest.fixture(autouse=True)
def _made_up_losses_are_current(monkeypatch):
    """The made-up losses' identities (record_factory.made_up_identity) are those of their code "now"."""
    monkeypatch.setattr(losses, "identity", made_up_identity)


def noisy(seed: int, level: float) -> np.ndarray:
    """Hits at each of the first R ranks with probability `level`, for 3 reproductions."""
    return np.random.default_rng(seed).random((3, QUERIES, R)) < level


@pytest.fixture()
def table(tmp_path) -> pd.DataFrame:
    results = tmp_path / "results"
    a = noisy(0, 0.6)
    make_run(results, "a", a, "2026-01-01T00:00:01")
    twin = a.copy()
    twin[:, 0, :] = True  # one query better in each reproduction: a hair above a, far inside the noise
    make_run(results, "a_twin", twin, "2026-01-01T00:00:02")
    make_run(results, "c", noisy(1, 0.4), "2026-01-01T00:00:03", collapsed=True)
    make_run(results, "old", None, "2026-01-01T00:00:04")  # recorded before per-query figures were kept
    make_run(results, "none", noisy(2, 0.2), "2026-01-01T00:00:05")
    (frame,) = leaderboard_tables(results).values()
    return frame.set_index("loss")


def test_ties_ranks_and_differences(table):
    assert set(SIGNIFICANCE_COLUMNS) <= set(table.columns)
    best = table.loc["a_twin"]
    assert best["rank"] == 1 and best["tied_with_best"] is True and best["diff_vs_best"] == 0
    assert np.isnan(best["p_vs_best"])
    twin = table.loc["a"]
    assert twin["tied_with_best"] is True and twin["rank"] == 1 and twin["p_vs_best"] >= 0.05
    assert -1e-3 < twin["diff_vs_best"] < 0
    worse = table.loc["c"]
    assert worse["tied_with_best"] is False and worse["p_vs_best"] < 0.05 and worse["rank"] == 3
    assert worse["diff_vs_best_ci_low"] < worse["diff_vs_best"] < worse["diff_vs_best_ci_high"] < 0
    assert table.loc["none", "rank"] == 4  # the untrained network: below all three


def test_collapsed_trainings_are_counted_and_reported(table, tmp_path):
    from harness.report.markdown import format_collapsed

    assert table.loc["c", "collapsed_trials"] == "[1]" and table.loc["c", "collapsed_test_units"] == 1
    assert table.loc["a", "collapsed_trials"] == "[]" and table.loc["a", "collapsed_test_units"] == 0
    assert pd.isna(table.loc["old", "collapsed_trials"])
    text = format_collapsed(table.reset_index())
    assert "- c: search trials 1; test units 1" in text and "- a:" not in text


def test_rows_without_per_query_figures_are_left_blank(table):
    old = table.loc["old"]
    assert pd.isna(old["rank"]) and pd.isna(old["tied_with_best"]) and pd.isna(old["p_vs_best"])


def test_the_table_is_the_same_every_time(tmp_path, table):
    again = leaderboard_tables(tmp_path / "results")
    pd.testing.assert_frame_equal(next(iter(again.values())).set_index("loss"), table)


# ------------------------------------------------------------------ harness compare, harness table


@pytest.fixture()
def results(tmp_path, table) -> object:
    return tmp_path / "results"


def test_compare_losses_gives_both_rows_the_difference_and_both_p_values(results, table):
    from harness.lookups import compare_losses

    (stem,) = leaderboard_tables(results)
    out = compare_losses(results, stem, "a_twin", "c")
    assert set(out["rows"]) == {"a_twin", "c"} and out["queries"] == QUERIES and out["reproductions"] == (3, 3)
    assert out["diff"] == pytest.approx(table.loc["a_twin", "concatenated_map_at_r_mean"]
                                        - table.loc["c", "concatenated_map_at_r_mean"], abs=1e-12)
    assert out["ci_low"] < out["diff"] < out["ci_high"] and out["p_bootstrap"] < 0.05 and 0 <= out["p_welch"] <= 1
    again = compare_losses(results, stem, "a_twin", "c")  # seeded: the same figures (rows hold NaN, != itself)
    assert {k: v for k, v in again.items() if k != "rows"} == {k: v for k, v in out.items() if k != "rows"}


def test_compare_names_what_is_missing(results):
    from harness.errors import HarnessError
    from harness.lookups import compare_losses

    (stem,) = leaderboard_tables(results)
    with pytest.raises(HarnessError, match="has no row for loss 'zzz'; its losses: none, a_twin"):
        compare_losses(results, stem, "a", "zzz")
    with pytest.raises(HarnessError, match="the run of 'old' .* kept no per-query figures"):
        compare_losses(results, stem, "a", "old")
    with pytest.raises(HarnessError, match="no leaderboard table nope under"):
        compare_losses(results, "nope", "a", "c")


def test_paper_table_formats(table):
    from harness.report.paper import paper_table, select_losses

    frame = table.reset_index()
    latex = paper_table(frame, "latex")
    assert latex.count("\\textbf{a\\_twin}") == 1 and "\\textbf{a}" in latex  # the tied group in bold
    assert "\\textbf{c}" not in latex and "\nc & " in latex
    assert "\\midrule\nuntrained & " in latex and latex.rstrip().endswith("alpha = 0.05)")
    assert "\\begin{tabular}{lcccccc}" in latex and "$\\pm$" in latex
    markdown = paper_table(frame, "markdown")
    assert "| **a_twin** |" in markdown and "| c |" in markdown and "rank" in markdown.splitlines()[0]
    csv = pd.read_csv(__import__("io").StringIO(paper_table(frame, "csv")))
    assert list(csv["loss"]) == list(frame["loss"]) and "p_vs_best" in csv
    top = select_losses(frame, ["c", "a"])
    assert list(top["loss"]) == ["a", "c"]  # the table's order


def test_the_latex_table_of_a_reality_check_protocol_has_the_published_block(table):
    from harness.report.paper import paper_table

    frame = table.reset_index().assign(dataset="cub200", protocol="reality_check")
    frame["loss"] = frame["loss"].replace({"a": "contrastive", "c": "triplet"})
    latex = paper_table(frame, "latex")
    ours, published = latex.split("\\emph{Published (Musgrave, Belongie, Lim, A Metric Learning Reality Check")
    assert "\\textbf{contrastive}" in ours and "\ntriplet & " in ours
    # the paper's means (Table 4, CUB-200), in FIGURE_COLUMNS order: sep. P@1, R-Prec, MAP@R, then con.
    assert "\ncontrastive & 59.73 & 31.98 & 21.18 & 68.13 & 37.24 & 26.53 \\\\" in published
    assert "\ntriplet & 55.76 & 29.55 & 18.75 & 64.24 & 34.55 & 23.69 \\\\" in published
    assert "\nuntrained & 50.54 & 25.12 & 14.53 & 51.05 & 24.85 & 14.21 \\\\" in published
    assert "a\\_twin" not in published  # only losses the paper reports


def test_unknown_losses_and_formats_are_named(table):
    from harness.errors import HarnessError
    from harness.report.paper import paper_table, select_losses

    frame = table.reset_index()
    with pytest.raises(HarnessError, match="not in this table: zzz; its losses: none, a_twin, a"):
        select_losses(frame, ["a", "zzz"])
    with pytest.raises(HarnessError, match="unknown format 'word'; known: latex, markdown, csv"):
        paper_table(frame, "word")
