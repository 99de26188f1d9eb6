"""`harness reproduce`: a fresh run reproduces bit for bit; a record whose code or data no longer match is refused."""

from __future__ import annotations

import pytest
from record_factory import make_record, save

from harness.benchmark import run_benchmark
from harness.cli import main
from harness.errors import HarnessError
from harness.image.data import dataset_version
from harness.reproduce import Reproduction, figures, reproduce


@pytest.mark.slow
def test_a_fresh_tiny_run_reproduces_every_figure_bit_for_bit(tmp_path, tiny_protocol, data_root, capsys):
    record, _ = run_benchmark(loss_name="batch_hard", dataset="glyphs", protocol=tiny_protocol,
                              results_dir=tmp_path / "results", reports_dir=tmp_path / "reports", data_root=data_root,
                              progress=False, jobs=2)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code = main(["reproduce", record.run_id, "--results", str(tmp_path / "results"), "--data-root", str(data_root),
                 "--no-progress"])
    out = capsys.readouterr().out
    print(out)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"reproducing {record.run_id} (loss batch_hard, protocol tiny")
    assert "  identical test.summary.concatenated_map_at_r.mean = " in out and "  identical search.best_value" in out
    assert lines[-1].endswith("figures identical: every figure reproduced bit for bit")
    total = len(figures(record))
    assert lines[-1] == f"{total} of {total} figures identical: every figure reproduced bit for bit" and total > 300
    assert not any(line.startswith("difference:") for line in lines)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # the rerun went elsewhere


def test_a_difference_is_one_line_naming_both_machines():
    recorded = make_record("r1", "batch_hard", 0.3, environment={"cpu": "Intel Xeon", "cpu_capability": "AVX512",
                                                                  "device": "cpu"})
    rerun = make_record("r1", "batch_hard", 0.3, environment={"cpu": "AMD EPYC", "cpu_capability": "AVX2",
                                                               "device": "cpu"})
    rerun.test["reproductions"][1]["concatenated"]["map_at_r"] = 0.30000001
    before, after = figures(recorded), figures(rerun)
    report = Reproduction(recorded, rerun, {p: (before[p], after.get(p)) for p in before})
    assert not report.identical and report.differences == ["test.reproductions[1].concatenated.map_at_r"]
    lines = report.lines()
    assert ("difference: test.reproductions[1].concatenated.map_at_r: recorded 0.3 on Intel Xeon (AVX512, cpu), "
            "reproduced 0.30000001 on AMD EPYC (AVX2, cpu)") in lines
    assert "  differs   test.reproductions[1]: 6 of 7 figures identical" in lines
    assert lines[-1].endswith("1 figures differ")


@pytest.fixture()
def recorded(tmp_path, tiny_protocol, data_root):
    version = dataset_version("glyphs", image_size=tiny_protocol.images.image_size, root=data_root)
    return tmp_path / "results", version


@pytest.mark.parametrize("change, reason", [
    ({"identity": "0" * 64}, "the code of loss batch_hard has changed since (identity 000000000000 in the record"),
    ({"identity": None}, "it was recorded before loss identities (schema 1)"),
    ({"dataset_version": "glyphs-v1-16px-000000000000"}, "dataset glyphs is version glyphs-v1-16px-"),
])
def test_a_record_whose_code_or_data_no_longer_match_is_refused(recorded, tiny_protocol, data_root, change, reason):
    results, version = recorded
    save(results, make_record("r1", "batch_hard", protocol=tiny_protocol, **{"dataset_version": version, **change}))
    with pytest.raises(HarnessError, match="cannot reproduce r1: ") as refused:
        reproduce(results, "r1", data_root=data_root, progress=False)
    assert reason in str(refused.value)
    assert not (results / "studies.db").exists()  # refused before anything ran


def test_an_unknown_run_names_where_it_looked(recorded, data_root):
    results, _ = recorded
    save(results, make_record("r1", "batch_hard"))
    with pytest.raises(HarnessError, match=r"no run r9 under .*runs; the newest there: r1"):
        reproduce(results, "r9", data_root=data_root, progress=False)
