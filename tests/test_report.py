"""The report's pieces: importances rebuilt from a record, the loss chart, and the plots folder beside the pages
(reuse without redraw, stale plots removed, the same bytes every time)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import optuna
import pytest
from committed_runs import committed_run, copy_committed_runs
from record_factory import make_record

from harness.publish import write_leaderboards
from harness.records import RunRecord, load_record, newest_complete_runs
from harness.report import write_report
from harness.report.importance import param_importances
from harness.report.plots import loss_chart
from harness.tables import leaderboard_tables

PNG = b"\x89PNG\r\n\x1a\n"


def _space(**distributions) -> dict:
    return {name: json.loads(optuna.distributions.distribution_to_json(d)) for name, d in distributions.items()}


def _record_with_trials(values_of) -> RunRecord:
    """A record whose 24 search trials draw `margin` and `noise` uniformly and score values_of(margin, noise)."""
    rng = np.random.default_rng(0)
    trials = []
    for number in range(24):
        margin, noise = float(rng.uniform(0, 1)), float(rng.uniform(0, 1))
        trials.append({"number": number, "state": "COMPLETE", "value": values_of(margin, noise),
                       "params": {"margin": margin, "noise": noise}})
    record = make_record("r1", "made", search={"trials_counted": 24, "best_params": {}, "best_value": None,
                                                "trials": trials})
    record.loss["search_distributions"] = _space(margin=optuna.distributions.FloatDistribution(0, 1),
                                                 noise=optuna.distributions.FloatDistribution(0, 1))
    return record


def test_the_hyperparameter_that_drives_the_value_is_the_important_one():
    record = _record_with_trials(lambda margin, noise: 0.5 + 0.4 * margin + 0.001 * noise)
    importances = param_importances(record)
    assert list(importances) == ["margin", "noise"]
    assert importances["margin"] > 0.9 and sum(importances.values()) == pytest.approx(1)
    assert param_importances(copy.deepcopy(record)) == importances  # seeded: the same figures every time


def test_importances_are_none_where_the_record_cannot_tell():
    record = _record_with_trials(lambda margin, noise: margin)
    without_space = copy.deepcopy(record)
    del without_space.loss["search_distributions"]
    assert param_importances(without_space) is None
    assert param_importances(_record_with_trials(lambda margin, noise: 0.5)) is None  # all trials alike
    one_trial = copy.deepcopy(record)
    one_trial.search["trials"] = one_trial.search["trials"][:1]
    assert param_importances(one_trial) is None


def test_the_loss_chart_of_a_record_without_history_says_not_recorded_and_is_deterministic():
    record = load_record(committed_run("circle") / "record.json")
    bare = copy.deepcopy(record)
    bare.search["trials"] = []
    del bare.loss["search_distributions"]
    for rep in bare.test["reproductions"]:
        rep["folds"] = []
    full, empty = loss_chart(record), loss_chart(bare)
    assert full.startswith(PNG) and empty.startswith(PNG) and full != empty
    assert loss_chart(copy.deepcopy(record)) == full  # no timestamp or random state in the file


RUNS = ("none", "circle", "batch_hard")


@pytest.fixture(scope="module")
def drawn(tmp_path_factory) -> tuple[Path, Path, dict[str, bytes]]:
    """The table of three committed runs drawn once for the module: its results, reports and plots' bytes."""
    root = tmp_path_factory.mktemp("drawn")
    results, reports = copy_committed_runs(RUNS, root / "results"), root / "reports"
    write_leaderboards(results, reports)
    return results, reports, {p.name: p.read_bytes() for p in (reports / "glyphs__quick").iterdir()}


@pytest.fixture()
def drawn_copy(drawn, tmp_path) -> tuple[Path, Path]:
    """A copy of the drawn results and reports that a test may change."""
    results, reports, _ = drawn
    shutil.copytree(results, tmp_path / "results")
    shutil.copytree(reports, tmp_path / "reports")
    return tmp_path / "results", tmp_path / "reports"


def test_plots_are_reused_without_redraw_and_redrawn_with_it(drawn, drawn_copy):
    results, reports = drawn_copy
    _, _, first_drawing = drawn
    plots = reports / "glyphs__quick"
    circle = plots / f"{committed_run('circle').name}.png"
    assert set(first_drawing) == {"map_at_r.png", "validation_vs_test.png", f"{committed_run('circle').name}.png",
                                  f"{committed_run('batch_hard').name}.png"}  # none is untrained: no chart of its own

    circle.write_bytes(PNG + b"kept")
    write_leaderboards(results, reports, redraw=False)
    assert circle.read_bytes() == PNG + b"kept"
    write_leaderboards(results, reports)
    assert {p.name: p.read_bytes() for p in plots.iterdir()} == first_drawing  # the same bytes as at first


def test_plots_of_runs_that_left_the_table_are_removed(drawn_copy):
    results, reports = drawn_copy
    gone = committed_run("batch_hard").name
    assert (reports / "glyphs__quick" / f"{gone}.png").exists()
    shutil.rmtree(results / "runs" / gone)
    write_leaderboards(results, reports, redraw=False)
    assert not (reports / "glyphs__quick" / f"{gone}.png").exists()
    assert "batch_hard" not in (reports / "glyphs__quick.html").read_text()


def test_write_report_names_every_file_it_wrote(drawn, tmp_path):
    results, _, _ = drawn
    (frame,) = leaderboard_tables(results).values()
    by_id = {r.run_id: r for r in newest_complete_runs(results).values()}
    written = write_report(frame, [by_id[i] for i in frame["run_id"]], tmp_path / "out", "t")
    assert {p.relative_to(tmp_path / "out").as_posix() for p in written} == {
        "t.md", "t.html", "t/map_at_r.png", "t/validation_vs_test.png",
        f"t/{committed_run('circle').name}.png", f"t/{committed_run('batch_hard').name}.png"}
    assert all(p.read_bytes() for p in written)
