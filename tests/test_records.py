"""Atomic writes, run records and leaderboard regeneration (no training: records built by hand)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from harness.atomic import atomic_open, write_atomic
from harness.errors import HarnessError
from harness.evaluate import summarize
from harness.leaderboard import leaderboard_tables, write_leaderboards
from harness.protocol import load_protocol
from harness.records import environment, load_records, save_record


def test_interrupted_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "table.csv"
    write_atomic(path, "old\n")
    with pytest.raises(KeyboardInterrupt), atomic_open(path) as handle:
        handle.write("half of the new")
        raise KeyboardInterrupt
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]  # no temporary file left behind
    write_atomic(path, b"new\n")
    assert path.read_bytes() == b"new\n"


def test_summary_is_mean_and_student_t_half_width():
    reps = [{"separated": {"precision_at_1": v, "r_precision": v, "map_at_r": v},
             "concatenated": {"precision_at_1": v, "r_precision": v, "map_at_r": v}} for v in (0.1, 0.2, 0.3)]
    figure = summarize(reps)["concatenated_map_at_r"]
    # std (ddof=1) = 0.1; t(0.975, 2) = 4.302653; half-width = 4.302653 * 0.1 / sqrt(3)
    assert figure["mean"] == pytest.approx(0.2)
    assert figure["ci95"] == pytest.approx(4.302652729911275 * 0.1 / math.sqrt(3))
    assert math.isnan(summarize(reps[:1])["separated_map_at_r"]["ci95"])


def _record(run_id, loss, value, *, protocol_hash=None, finished_at="2026-01-01T00:00:00", status="complete"):
    protocol = load_protocol("quick")
    reps = [{m: {"precision_at_1": value, "r_precision": value, "map_at_r": value} for m in
             ("separated", "concatenated")} for _ in range(2)]
    return {"run_id": run_id, "status": status, "finished_at": finished_at,
            "dataset": {"name": "glyphs", "version": "glyphs-v1-test"},
            "protocol": protocol.to_dict(), "protocol_hash": protocol_hash or protocol.hash,
            "loss": {"name": loss}, "search": {"trials_counted": 4, "best_params": {"margin": 0.1},
                                               "best_value": value},
            "test": {"reproductions": reps, "summary": summarize(reps)},
            "environment": {"git_commit": "abc"}}


def test_leaderboard_keeps_newest_complete_run_per_loss_and_separates_protocols(tmp_path):
    results = tmp_path / "results"
    save_record(results, _record("r1", "batch_hard", 0.3, finished_at="2026-01-01T00:00:00"))
    save_record(results, _record("r2", "batch_hard", 0.4, finished_at="2026-01-02T00:00:00"))
    save_record(results, _record("r3", "batch_hard", 0.9, finished_at="2026-01-03T00:00:00", status="running"))
    save_record(results, _record("r4", "none", 0.1))
    save_record(results, _record("r5", "batch_all", 0.5))
    save_record(results, _record("r6", "batch_all", 0.7, protocol_hash="f" * 64))
    tables = leaderboard_tables(results)
    assert set(tables) == {"glyphs__quick", "glyphs__quick__ffffffffffff"}
    main = tables["glyphs__quick"]
    assert list(main["loss"]) == ["none", "batch_all", "batch_hard"]
    assert list(main["run_id"]) == ["r4", "r5", "r2"]
    assert tables["glyphs__quick__ffffffffffff"]["run_id"].tolist() == ["r6"]

    written = write_leaderboards(results, tmp_path / "reports")
    reports = tmp_path / "reports"
    assert set(written) >= {results / "leaderboard" / "glyphs__quick.csv", reports / "glyphs__quick.md",
                            reports / "glyphs__quick.html", reports / "glyphs__quick" / "map_at_r.png"}
    csv = pd.read_csv(results / "leaderboard" / "glyphs__quick.csv")
    assert csv.loc[csv["loss"] == "batch_hard", "concatenated_map_at_r_mean"].item() == pytest.approx(0.4)
    assert json.loads(csv.loc[0, "best_params"]) == {"margin": 0.1}


def test_corrupt_record_is_named(tmp_path):
    save_record(tmp_path, _record("good", "none", 0.1))
    bad = tmp_path / "runs" / "bad" / "record.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"run_id": "bad", ')
    with pytest.raises(HarnessError, match="corrupt run record .*bad/record.json"):
        load_records(tmp_path)


def test_environment_names_versions_and_commit():
    env = environment()
    assert env["packages"]["torch"].startswith("2.14.1") and env["packages"]["optuna"]
    assert {"git_commit", "git_dirty", "python", "platform", "device", "command", "cpu", "cpu_capability"} <= set(env)
    assert env["cpu_capability"] in {"DEFAULT", "AVX2", "AVX512", "ZVECTOR", "VSX", "SVE256"}


def test_harness_outputs_do_not_mark_the_code_dirty(tmp_path, monkeypatch):
    import subprocess

    import harness.records

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    for folder in ("results", "reports", "harness"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "file.txt").write_text("v1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.setattr(harness.records, "REPO_ROOT", tmp_path)
    assert environment()["git_dirty"] is False
    (tmp_path / "results" / "file.txt").write_text("a new leaderboard\n")
    (tmp_path / "reports" / "file.txt").write_text("a new report\n")
    assert environment()["git_dirty"] is False  # a benchmark's own outputs
    (tmp_path / "harness" / "file.txt").write_text("changed code\n")
    assert environment()["git_dirty"] is True


def test_completed_run_matches_dataset_protocol_loss_and_source(tmp_path):
    from harness.benchmark import completed_run
    from losses import source_sha256

    quick = load_protocol("quick")
    results = tmp_path / "results"
    assert completed_run(results, loss_name="batch_hard", dataset="glyphs", protocol=quick) is None
    record = _record("r1", "batch_hard", 0.3)
    record["loss"]["source_sha256"] = source_sha256("batch_hard")
    save_record(results, record)
    stale = _record("r0", "batch_all", 0.3)
    stale["loss"]["source_sha256"] = "0" * 64  # an older version of the loss's file
    save_record(results, stale)
    save_record(results, _record("r2", "none", 0.1, status="running"))
    assert completed_run(results, loss_name="batch_hard", dataset="glyphs", protocol=quick) == "r1"
    assert completed_run(results, loss_name="batch_hard", dataset="cub200", protocol=quick) is None
    assert completed_run(results, loss_name="batch_hard", dataset="glyphs",
                         protocol=quick.with_overrides(trials=9, reproductions=None, seed=None)) is None
    assert completed_run(results, loss_name="batch_all", dataset="glyphs", protocol=quick) is None
    assert completed_run(results, loss_name="none", dataset="glyphs", protocol=quick) is None


def test_copies_that_differ_from_the_official_counts_get_tables_of_their_own(tmp_path):
    results = tmp_path / "results"
    official = _record("r1", "batch_hard", 0.3)
    official["dataset"] = {"name": "glyphs", "version": "glyphs-v1-aaaaaaaaaaaa", "official": True}
    other = _record("r2", "batch_hard", 0.5)
    other["dataset"] = {"name": "glyphs", "version": "glyphs-v1-bbbbbbbbbbbb", "official": False}
    save_record(results, official)
    save_record(results, other)
    tables = leaderboard_tables(results)
    # both runs stand (different versions are different keys), each in its own table
    assert set(tables) == {"glyphs__quick", "glyphs__quick__data-bbbbbbbbbbbb"}
    assert list(tables["glyphs__quick"]["run_id"]) == ["r1"]
    assert list(tables["glyphs__quick__data-bbbbbbbbbbbb"]["run_id"]) == ["r2"]


def test_reality_check_report_shows_the_published_figures_beside_ours(tmp_path):
    from harness.reference import published_figures

    results, reports = tmp_path / "results", tmp_path / "reports"
    protocol = load_protocol("reality_check", dataset="cub200")
    for run_id, loss in (("r1", "contrastive"), ("r2", "none"), ("r3", "batch_hard")):
        record = _record(run_id, loss, 0.25, protocol_hash=protocol.hash)
        record["protocol"] = protocol.to_dict()
        record["dataset"] = {"name": "cub200", "version": "cub200-0123456789ab", "official": True}
        save_record(results, record)
    write_leaderboards(results, reports)
    report = (reports / "cub200__reality_check.md").read_text()
    published = published_figures("cub200").set_index("loss")
    assert published.loc["contrastive", "concatenated_map_at_r"] == pytest.approx(0.2653)
    assert "| contrastive | published | 59.73 | 31.98 | 21.18 | 68.13 | 37.24 | 26.53 |" in report
    assert "| none | published | 50.54 | 25.12 | 14.53 | 51.05 | 24.85 | 14.21 |" in report  # the paper's Pretrained
    assert "| contrastive | harness (reality_check) | 25.00" in report
    assert "batch_hard | published" not in report  # the paper has no batch-hard row
    # glyphs has no published figures: its report has no such section
    save_record(results, _record("r4", "batch_hard", 0.3))
    write_leaderboards(results, reports)
    assert "published" not in (reports / "glyphs__quick.md").read_text()


def test_an_installed_package_reports_no_commit_of_a_repository_around_it(tmp_path, monkeypatch):
    import subprocess

    import harness.records

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    site_packages = tmp_path / "venv" / "lib" / "site-packages"  # inside a git work tree, but no .git of its own
    site_packages.mkdir(parents=True)
    monkeypatch.setattr(harness.records, "REPO_ROOT", site_packages)
    env = environment()
    assert env["git_commit"] is None and env["git_dirty"] is None
