"""End to end on glyphs with a tiny protocol: records, tables, leak-freedom, reproducibility, resume."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch

import harness.search
import losses
from harness.benchmark import default_storage, loss_section, run_benchmark, run_key
from harness.diagnostics import DIAGNOSTICS
from harness.errors import LossNotFinite
from harness.evaluate import METRICS, MODES
from harness.image.data import dataset_version, load_dataset
from harness.per_query import array_name, load_per_query
from harness.search import FAIL_REASON, counted_trials, run_search
from harness.splits import class_disjoint_split

pytestmark = pytest.mark.slow


def run_cli(*argv) -> tuple[int, str, str]:
    import contextlib
    import io

    from harness.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _run(tmp_path, protocol, data_root, loss="batch_hard", **kw):
    return run_benchmark(loss_name=loss, dataset="glyphs", protocol=protocol, results_dir=tmp_path / "results",
                         reports_dir=tmp_path / "reports", data_root=data_root, progress=False, **kw)[0]


def test_benchmark_writes_record_leaderboard_and_report(tmp_path, tiny_protocol, data_root):
    record = _run(tmp_path, tiny_protocol, data_root)
    baseline = _run(tmp_path, tiny_protocol, data_root, loss="none")

    path = tmp_path / "results" / "runs" / record.run_id / "record.json"
    stored = json.loads(path.read_text())
    assert stored["protocol_hash"] == tiny_protocol.hash and stored["protocol"]["name"] == "tiny"
    assert stored["status"] == "complete" and stored["loss"]["name"] == "batch_hard"
    assert stored["schema_version"] == 2 and stored["loss"]["identity"] == losses.identity("batch_hard")
    assert stored["dataset"]["version"].startswith("glyphs-v")
    assert stored["search"]["trials_counted"] == 2 and len(stored["search"]["trials"]) == 2
    assert set(stored["search"]["best_params"]) == {"margin"}
    for trial in stored["search"]["trials"]:
        assert all(f"fold{f}_val_map_at_r" in trial for f in range(4))
        for f in range(4):  # the training diagnostics of every fold, at every validation step
            assert trial[f"fold{f}_collapsed"] is False
            assert [step["iteration"] for step in trial[f"fold{f}_history"]] == [6, 12]
            assert set(DIAGNOSTICS) <= set(trial[f"fold{f}_history"][0])
    for rep in stored["test"]["reproductions"]:
        for fold in rep["folds"]:
            assert fold["collapsed"] is False and set(DIAGNOSTICS) <= set(fold["history"][-1])
    assert len(stored["test"]["reproductions"]) == 2
    assert all(len(rep["folds"]) == 4 for rep in stored["test"]["reproductions"])
    env = stored["environment"]
    assert env["packages"]["torch"] and "git_commit" in env and env["command"]

    # the test stage saw only test classes: 727 glyphs -> classes 363..726
    assert stored["dataset"]["test_classes"] == 727 - 363 and stored["dataset"]["test_items"] == 364 * 16

    csv_path = tmp_path / "results" / "leaderboard" / f"glyphs__tiny__{tiny_protocol.hash[:12]}.csv"
    table = pd.read_csv(csv_path)
    assert list(table["loss"]) == ["none", "batch_hard"]  # the baseline row comes first
    required = ["dataset", "protocol", "protocol_hash", "loss", "run_id", "trials", "reproductions", "best_params"]
    required += [f"{m}_{k}_{s}" for m in MODES for k in METRICS for s in ("mean", "ci95")]
    assert set(required) <= set(table.columns)
    row = table.set_index("loss").loc["batch_hard"]
    assert row["run_id"] == record.run_id and json.loads(row["best_params"]).keys() == {"margin"}
    for column in required[8:]:
        assert 0.0 <= row[column] <= 1.0
    assert row["concatenated_map_at_r_mean"] == pytest.approx(
        record.test["summary"]["concatenated_map_at_r"]["mean"], abs=1e-6)
    assert table.set_index("loss").loc["none", "run_id"] == baseline.run_id
    assert baseline.search["trials_counted"] == 0

    # every query's figures beside the record, averaging to the record's own figures
    per_query = load_per_query(path.parent, stored["test"]["per_query"])
    scored = per_query["relevant"] > 0
    assert len(scored) == 364 * 16 and scored.all()  # glyphs: 16 images per class, no singletons
    for rep in stored["test"]["reproductions"]:
        modes = {"concatenated": rep["concatenated"]}
        modes |= {f"fold{f}": fold["test"] for f, fold in enumerate(rep["folds"])}
        for mode, figures in modes.items():
            r = rep["reproduction"]
            ap = per_query[array_name(r, mode, "ap_at_r")]
            assert ap.mean() == pytest.approx(figures["map_at_r"], abs=1e-12)
            assert per_query[array_name(r, mode, "hit_at_1")].mean() == pytest.approx(figures["precision_at_1"],
                                                                                     abs=1e-12)
            hits = per_query[array_name(r, mode, "hits_within_r")]
            assert (hits / per_query["relevant"]).mean() == pytest.approx(figures["r_precision"], abs=1e-12)

    # the table's significance columns, and the two commands that read them
    assert row["rank"] == 1 and row["tied_with_best"] in (True, "True") and row["diff_vs_best"] == 0
    where = ["--dataset", "glyphs", "--protocol", str(Path(__file__).parent / "tiny.toml"),
             "--results", str(tmp_path / "results")]
    code, out, err = run_cli("compare", "batch_hard", "none", *where)
    assert code == 0, err
    assert "batch_hard - none = " in out and "95% CI [" in out and "(paired bootstrap, 10,000 resamples)" in out
    code, out, err = run_cli("table", "--format", "latex", *where)
    assert code == 0, err
    assert "\\textbf{batch\\_hard}" in out and "untrained &" in out and out.count("\\\\") >= 3

    code, out, err = run_cli("cite", "batch_hard", *where)
    assert code == 0, err
    assert f"rerun: git checkout {env['git_commit']}" in out and tiny_protocol.hash in out
    assert "@article{hermans2017defense," in out and stored["dataset"]["version"] in out
    code, out, err = run_cli("cite", "zzz", *where)
    assert code == 2 and "has no row for loss 'zzz'; its losses: none, batch_hard" in err

    report = (tmp_path / "reports" / csv_path.with_suffix(".md").name).read_text()
    assert "<details><summary>batch_hard</summary>" in report and "@article{hermans2017defense," in report
    assert "| **batch_hard** |" in report and "Holm-corrected" in report
    assert "| none |" in report and tiny_protocol.hash in report
    plots = tmp_path / "reports" / csv_path.stem
    assert sorted(p.name for p in plots.glob("*.png")) == sorted(
        ["map_at_r.png", "validation_vs_test.png", f"{stored['run_id']}.png"])
    assert f"({csv_path.stem}/{stored['run_id']}.png)" in report and f"({csv_path.stem}/map_at_r.png)" in report
    page = (tmp_path / "reports" / csv_path.with_suffix(".html").name).read_text()
    assert page.count('<img src="data:image/png;base64,') == 3 and 'id="loss-batch_hard"' in page


def test_same_command_and_seed_give_identical_test_figures(tmp_path, tiny_protocol, data_root):
    first = _run(tmp_path / "a", tiny_protocol, data_root)
    second = _run(tmp_path / "b", tiny_protocol, data_root)
    assert first.search["best_params"] == second.search["best_params"]
    assert first.test["summary"] == second.test["summary"]
    assert first.test["reproductions"] == second.test["reproductions"]
    assert first.test["per_query"] == second.test["per_query"]  # the same bytes, so the same SHA-256


def test_search_never_reads_a_test_item(tmp_path, tiny_protocol, data_root, monkeypatch):
    data = load_dataset("glyphs", image_size=16, root=data_root)
    split = class_disjoint_split(data.num_classes)
    seen = set()
    real_train_fold = harness.search.train_fold

    def spying_train_fold(**kwargs):
        seen.update(kwargs["train_set"].labels.tolist())
        seen.update(kwargs["val_set"].labels.tolist())
        return real_train_fold(**kwargs)

    monkeypatch.setattr(harness.search, "train_fold", spying_train_fold)
    # the benchmark hands the search the trainval subset only; check what it hands over, too
    real_run_search = harness.benchmark.run_search

    def spying_run_search(trainval, *args, **kwargs):
        assert set(trainval.labels.tolist()) == set(split.trainval)
        return real_run_search(trainval, *args, **kwargs)

    monkeypatch.setattr(harness.benchmark, "run_search", spying_run_search)
    _run(tmp_path, tiny_protocol, data_root)
    assert seen == set(split.trainval)
    assert not seen & set(split.test)


def _key(protocol, data_root, loss="batch_hard"):
    return run_key("glyphs", dataset_version("glyphs", image_size=16, root=data_root), protocol, loss_section(loss))


def _search(tmp_path, protocol, data_root, storage):
    data = load_dataset("glyphs", image_size=16, root=data_root)
    split = class_disjoint_split(data.num_classes)
    return run_search(data.subset(split.trainval), split, protocol, _key(protocol, data_root), storage=storage,
                      progress=False)


def test_interrupted_search_resumes_where_it_stopped(tmp_path, tiny_protocol, data_root, monkeypatch):
    protocol = tiny_protocol.with_overrides(trials=3)
    storage = default_storage(tmp_path)
    calls = []
    real_train_fold = harness.search.train_fold

    def interrupting_train_fold(**kwargs):
        calls.append(kwargs["hparams"])
        if len(calls) == 6:  # second fold of the second trial: as if the user pressed Ctrl-C
            raise KeyboardInterrupt
        return real_train_fold(**kwargs)

    monkeypatch.setattr(harness.search, "train_fold", interrupting_train_fold)
    with pytest.raises(KeyboardInterrupt):
        _search(tmp_path, protocol, data_root, storage)
    study = optuna.load_study(study_name=_key(protocol, data_root).study_name,
                              storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "WAITING"]  # queued again
    assert len(counted_trials(study)) == 1

    calls.clear()
    monkeypatch.setattr(harness.search, "train_fold", lambda **kw: (calls.append(kw), real_train_fold(**kw))[1])
    result = _search(tmp_path, protocol, data_root, storage)
    assert result.trials_counted == 3
    # the interrupted trial came back with its parameters and its finished first fold: 3 + 4 folds trained
    assert len(calls) == 3 + 4
    assert [t["state"] for t in result.trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert result.trials[2]["params"] == result.trials[1]["params"]
    assert result.trials[2]["fold0_val_map_at_r"] == result.trials[1]["fold0_val_map_at_r"]

    calls.clear()
    again = _search(tmp_path, protocol, data_root, storage)  # complete: nothing more to do
    assert calls == [] and again.best_params == result.best_params


class _NaNWhenMarginLarge(torch.nn.Module):
    def __init__(self, margin):
        super().__init__()
        self.margin = margin

    def forward(self, embeddings, labels):
        value = embeddings.sum() * 0.0
        return value + float("nan") if self.margin > 0.5 else value + embeddings.pow(2).sum() * 1e-3


def test_a_nan_loss_fails_that_trial_only(tmp_path, tiny_protocol, data_root, monkeypatch):
    protocol = tiny_protocol.with_overrides(trials=4)
    storage = default_storage(tmp_path)
    study = optuna.create_study(storage=storage, direction="maximize",
                                study_name=_key(protocol, data_root).study_name)
    for margin in (0.9, 0.1, 0.2, 0.3):
        study.enqueue_trial({"margin": margin})
    monkeypatch.setattr(harness.train.losses, "build",
                        lambda name, *, embedding_dim, num_classes, margin: _NaNWhenMarginLarge(margin))
    result = _search(tmp_path, protocol, data_root, storage)
    assert [t["state"] for t in result.trials] == ["FAIL", "COMPLETE", "COMPLETE", "COMPLETE"]
    assert result.trials[0]["params"] == {"margin": 0.9}
    assert "became nan at iteration 1" in result.trials[0][FAIL_REASON]
    assert result.trials_counted == 4 and result.best_params["margin"] in (0.1, 0.2, 0.3)


def test_train_fold_raises_loss_not_finite(tiny_protocol, data_root, monkeypatch):
    monkeypatch.setattr(harness.train.losses, "build", lambda name, **kw: _NaNWhenMarginLarge(1.0))
    data = load_dataset("glyphs", image_size=16, root=data_root)
    split = class_disjoint_split(data.num_classes)
    with pytest.raises(LossNotFinite, match="iteration 1"):
        harness.train.train_fold(protocol=tiny_protocol, loss_name="x", hparams={},
                                 train_set=data.subset(split.folds[0].train),
                                 val_set=data.subset(split.folds[0].val), seed=0)


def test_quick_protocol_trains_batch_hard_well_past_the_untrained_network(data_root):
    """The shipped protocol's promise: its training (backbone, budget, batches, augmentation) on one search fold
    lifts validation MAP@R well past the same network untrained (the benchmark's `none` baseline scores that)."""
    from harness.metrics import retrieval_metrics
    from harness.protocol import load_protocol

    quick = load_protocol("quick")
    data = load_dataset("glyphs", image_size=quick.images.image_size, resize=quick.images.resize, root=data_root)
    fold = class_disjoint_split(data.num_classes).folds[0]
    train_set, val_set = data.subset(fold.train), data.subset(fold.val)
    trained = harness.train.train_fold(protocol=quick, loss_name="batch_hard",
                                       hparams=dict(losses.info("batch_hard").defaults),
                                       train_set=train_set, val_set=val_set, seed=0)
    untrained = harness.train.build_model(quick, val_set, seed=0).eval()
    baseline = retrieval_metrics(harness.train.embed(untrained, val_set, quick, device=torch.device("cpu")),
                                 val_set.labels.numpy())["map_at_r"]
    assert trained.best_val_map_at_r >= 1.5 * baseline, (trained.best_val_map_at_r, baseline)


@pytest.mark.parametrize("loss_name", losses.available())
def test_every_registered_loss_runs_the_whole_protocol(tmp_path, tiny_protocol, data_root, loss_name):
    """Search, test, record and table for each loss of the zoo (one trial, one reproduction)."""
    protocol = tiny_protocol.with_overrides(trials=1, reproductions=1)
    record = _run(tmp_path, protocol, data_root, loss=loss_name)
    assert record.status == "complete" and record.search["trials_counted"] == 1
    assert set(record.search["best_params"]) == set(losses.search_space(loss_name))
    summary = record.test["summary"]
    assert all(0.0 <= summary[f"{m}_{k}"]["mean"] <= 1.0 for m in MODES for k in METRICS)
