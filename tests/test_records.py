"""Atomic writes, run records and leaderboard regeneration (no training: records from tests/record_factory.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from record_factory import make_record, save

from harness.atomic import atomic_open, write_atomic
from harness.errors import HarnessError
from harness.evaluate import summarize
from harness.protocol import load_protocol
from harness.publish import write_leaderboards
from harness.records import environment, load_record, load_records
from harness.tables import leaderboard_tables


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


def test_leaderboard_keeps_newest_complete_run_per_loss_and_separates_protocols(tmp_path):
    results = tmp_path / "results"
    save(results, make_record("r1", "batch_hard", 0.3, finished_at="2026-01-01T00:00:00"))
    save(results, make_record("r2", "batch_hard", 0.4, finished_at="2026-01-02T00:00:00"))
    save(results, make_record("r3", "batch_hard", 0.9, finished_at="2026-01-03T00:00:00", status="running"))
    save(results, make_record("r4", "none", 0.1))
    save(results, make_record("r5", "batch_all", 0.5))
    save(results, make_record("r6", "batch_all", 0.7, protocol_hash="f" * 64))
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
    assert json.loads(csv.loc[1, "best_params"]) == {"margin": 0.1}


def test_corrupt_record_is_named(tmp_path):
    save(tmp_path, make_record("good", "none", 0.1))
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


def test_completed_run_matches_the_whole_run_key(tmp_path):
    from harness.benchmark import completed_run, loss_section, run_key

    quick = load_protocol("quick")
    results = tmp_path / "results"

    def key(loss, *, dataset="glyphs", version="glyphs-v1-test", protocol=quick):
        return run_key(dataset, version, protocol, loss_section(loss))

    assert completed_run(results, key("batch_hard")) is None
    save(results, make_record("r1", "batch_hard", 0.3))
    save(results, make_record("r0", "batch_all", 0.3, identity="0" * 64))  # made by older code of the loss
    save(results, make_record("r2", "none", 0.1, status="running"))
    assert completed_run(results, key("batch_hard")) == "r1"
    assert completed_run(results, key("batch_hard", dataset="cub200")) is None
    assert completed_run(results, key("batch_hard", version="glyphs-v1-other")) is None
    assert completed_run(results, key("batch_hard", protocol=quick.with_overrides(trials=9, reproductions=None,
                                                                                 seed=None))) is None
    assert completed_run(results, key("batch_all")) is None
    assert completed_run(results, key("none")) is None


def test_copies_that_differ_from_the_official_counts_get_tables_of_their_own(tmp_path):
    results = tmp_path / "results"
    official = make_record("r1", "batch_hard", 0.3, dataset_version="glyphs-v1-aaaaaaaaaaaa")
    other = make_record("r2", "batch_hard", 0.5, dataset_version="glyphs-v1-bbbbbbbbbbbb", official=False)
    save(results, official)
    save(results, other)
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
        save(results, make_record(run_id, loss, 0.25, protocol=protocol, dataset="cub200",
                                  dataset_version="cub200-0123456789ab"))
    write_leaderboards(results, reports)
    report = (reports / "cub200__reality_check.md").read_text()
    published = published_figures("cub200").set_index("loss")
    assert published.loc["contrastive", "concatenated_map_at_r"] == pytest.approx(0.2653)
    assert "| contrastive | published | 59.73 | 31.98 | 21.18 | 68.13 | 37.24 | 26.53 |" in report
    assert "| none | published | 50.54 | 25.12 | 14.53 | 51.05 | 24.85 | 14.21 |" in report  # the paper's Pretrained
    assert "| contrastive | harness (reality_check) | 25.00" in report
    assert "batch_hard | published" not in report  # the paper has no batch-hard row
    # glyphs has no published figures: its report has no such section
    save(results, make_record("r4", "batch_hard", 0.3))
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


def test_load_record_reads_every_committed_record_and_the_first_schema():
    """Every record the repository holds, and a schema-1 record (kept from before identities), load as
    RunRecords of the current schema; a schema-1 record has no identity, so its row is never current."""
    from harness.records import SCHEMA_VERSION, RunRecord
    from harness.run_key import RunKey

    repo = Path(__file__).resolve().parents[1]
    paths = sorted((repo / "results" / "runs").glob("*/record.json"))
    assert len(paths) >= 25
    for path in paths:
        record = load_record(path)
        assert isinstance(record, RunRecord) and record.schema_version == SCHEMA_VERSION
        assert record.key.dataset in ("glyphs", "wordnet") and record.key.protocol_hash == record.protocol_hash
    old = load_record(Path(__file__).parent / "fixtures" / "record_schema1.json")
    assert old.schema_version == SCHEMA_VERSION and old.loss["identity"] is None
    assert old.loss["source_sha256"]  # kept as it was written
    assert old.key == RunKey("glyphs", old.dataset["version"], old.protocol_hash, "batch_hard", None)


def test_one_writer_round_trips_and_refuses_what_is_not_a_record(tmp_path):
    record = save(tmp_path, make_record("r1", "batch_hard", 0.3))
    path = tmp_path / "runs" / "r1" / "record.json"
    assert json.loads(path.read_text())["schema_version"] == 2
    assert load_record(path) == record
    data = json.loads(path.read_text())
    data["schema_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(HarnessError, match="schema_version 99 is not one this harness reads"):
        load_record(path)
    del data["schema_version"], data["test"]
    path.write_text(json.dumps(data))
    with pytest.raises(HarnessError, match="not a run record of schema 1: missing test"):
        load_record(path)


def test_rows_of_changed_loss_code_stay_visible_but_not_current(tmp_path):
    results = tmp_path / "results"
    save(results, make_record("r1", "batch_hard", 0.3))
    save(results, make_record("r0", "batch_hard", 0.5, identity="0" * 64, finished_at="2026-01-02T00:00:00"))
    save(results, make_record("r2", "batch_all", 0.4, identity=None))  # schema 1: identity unknown
    save(results, make_record("r3", "none", 0.1))
    table = leaderboard_tables(results)["glyphs__quick"]
    # the baseline, then the current rows best first, then the stale ones, each with its reason
    assert list(table["run_id"]) == ["r3", "r1", "r0", "r2"]
    assert list(table["current"]) == [True, True, False, False]
    assert "the loss's code changed since (identity 000000000000 in the record" in table.loc[2, "stale_reason"]
    assert "recorded before loss identities" in table.loc[3, "stale_reason"]
    reports = tmp_path / "reports"
    write_leaderboards(results, reports)
    markdown = (reports / "glyphs__quick.md").read_text()
    assert "Not current" in markdown and "the loss's code changed since" in markdown



def test_a_plugin_that_cannot_be_loaded_here_is_not_current_and_says_why(tmp_path):
    results = tmp_path / "results"
    save(results, make_record("r1", f"{tmp_path / 'gone.py'}:Gone", 0.3, identity="a" * 64))
    (table,) = leaderboard_tables(results).values()
    assert not table.loc[0, "current"]
    assert table.loc[0, "stale_reason"].startswith("the loss cannot be loaded here (LossError: loss ")
