"""The command line: help, splits, score, and bad input that must write nothing."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from harness.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_commands_losses_and_datasets():
    out = subprocess.run([sys.executable, "-m", "harness.cli", "--help"], capture_output=True, text=True).stdout
    for word in ("benchmark", "score", "splits", "leaderboard", "batch_hard", "batch_all", "glyphs", "none",
                 "quick"):
        assert word in out


def test_splits_by_class_count(capsys):
    code, out, _ = _run(capsys, "splits", "--classes", "200")
    data = json.loads(out)
    assert code == 0 and data["test"] == list(range(100, 200))
    assert data["folds"][0]["val"] == list(range(75, 100))


def test_score_prints_json(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "e.npy", rng.normal(size=(50, 8)).astype(np.float32))
    np.save(tmp_path / "l.npy", rng.integers(0, 5, size=50))
    code, out, _ = _run(capsys, "score", "--embeddings", str(tmp_path / "e.npy"), "--labels", str(tmp_path / "l.npy"))
    result = json.loads(out)
    assert code == 0
    assert {"precision_at_1", "r_precision", "map_at_r", "n_queries"} <= set(result)


@pytest.mark.parametrize(("argv", "message"), [
    (["benchmark", "--loss", "batch_hardd"], "unknown loss 'batch_hardd'; known losses: .*batch_hard"),
    (["benchmark", "--loss", "batch_hard", "--dataset", "mnist"],
     "unknown dataset 'mnist'; known datasets: cars196, cub200, glyphs, inshop, sop"),
    (["benchmark", "--loss", "batch_hard", "--protocol", "slow"], "unknown protocol 'slow'"),
    (["benchmark", "--loss", "batch_hard", "--trials", "0"], "trials must be at least 1"),
])
def test_bad_benchmark_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    results, reports = tmp_path / "results", tmp_path / "reports"
    code, out, err = _run(capsys, *argv, "--results", str(results), "--reports", str(reports))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("harness: error: ")
    import re
    assert re.search(message, err)
    assert not results.exists() and not reports.exists()


def test_protocol_file_with_unknown_key_writes_nothing(tmp_path, capsys):
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\nversion = 1\ndescription = "x"\n[budget]\nmax_iters = 10\n')
    results = tmp_path / "results"
    code, _, err = _run(capsys, "benchmark", "--loss", "batch_hard", "--protocol", str(path),
                        "--results", str(results), "--reports", str(tmp_path / "reports"))
    assert code == 2 and "unknown key(s) in [budget]: max_iters" in err and err.count("\n") == 1
    assert not results.exists()


def test_score_bad_input(tmp_path, capsys):
    np.save(tmp_path / "e.npy", np.ones((5, 3), dtype=np.float32) + np.eye(5, 3, dtype=np.float32))
    np.save(tmp_path / "l4.npy", np.arange(4))
    np.save(tmp_path / "s.npy", np.array(["a", "b", "c", "d", "e"]))
    (tmp_path / "text.npy").write_text("not an array")
    cases = [
        (["e.npy", "l4.npy"], "5.*4|4.*5"),
        (["s.npy", "l4.npy"], "s.npy"),
        (["text.npy", "l4.npy"], "text.npy"),
        (["missing.npy", "l4.npy"], "missing.npy"),
    ]
    import re
    for (emb, lab), message in cases:
        code, out, err = _run(capsys, "score", "--embeddings", str(tmp_path / emb), "--labels", str(tmp_path / lab))
        assert code == 2 and out == "" and err.count("\n") == 1, (emb, lab, err)
        assert re.search(message, err), err


def test_losses_names_lists_the_registry_one_a_line(capsys):
    import losses

    code, out, _ = _run(capsys, "losses", "--names")
    assert code == 0 and out.split() == losses.available()


def test_ctrl_c_is_one_line_and_exit_130(capsys, monkeypatch):
    import harness.cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(harness.cli, "_benchmark", interrupted)
    code, out, err = _run(capsys, "benchmark", "--loss", "batch_hard")
    assert code == 130 and out == ""
    assert err.count("\n") == 1 and "same command resumes" in err


def test_if_missing_skips_a_loss_already_run_under_the_protocol(tmp_path, capsys, data_root):
    from record_factory import make_record, save

    from harness.benchmark import completed_run, loss_section, run_key
    from harness.image.data import dataset_version
    from harness.protocol import load_protocol

    quick = load_protocol("quick")
    version = dataset_version("glyphs", image_size=quick.images.image_size, root=data_root)
    save(tmp_path / "results", make_record("r1", "none", dataset_version=version))
    # a run on another copy of the data (another version) does not count as done
    assert completed_run(tmp_path / "results", run_key("glyphs", "glyphs-other", quick, loss_section("none"))) is None
    before = sorted(p.name for p in (tmp_path / "results").rglob("*"))
    code, out, _ = _run(capsys, "benchmark", "--loss", "none", "--if-missing", "--results", str(tmp_path / "results"),
                        "--reports", str(tmp_path / "reports"), "--data-root", str(data_root))
    assert code == 0 and "already run" in out and "r1" in out
    assert sorted(p.name for p in (tmp_path / "results").rglob("*")) == before
    assert not (tmp_path / "reports").exists()
