"""The reality-check split rule: worked examples from the paper's code, and disjointness for any n."""

from __future__ import annotations

import pytest

from harness.errors import HarnessError
from harness.splits import class_disjoint_split


def test_cub200_worked_example():
    split = class_disjoint_split(200)
    assert split.trainval == tuple(range(100))
    assert split.test == tuple(range(100, 200))
    vals = [sorted(f.val) for f in split.folds]
    assert vals == [list(range(75, 100)), list(range(0, 25)), list(range(25, 50)), list(range(50, 75))]
    for fold in split.folds:
        assert sorted(fold.train + fold.val) == list(range(100))


def test_cars196_worked_example():
    split = class_disjoint_split(196)
    assert split.test == tuple(range(98, 196))
    starts = [fold.train[0] for fold in split.folds]
    assert starts == [0, 24, 49, 73]
    assert [len(f.val) for f in split.folds] == [24] * 4
    validated = set().union(*(f.val for f in split.folds))
    assert set(range(98)) - validated == {24, 73}
    assert sorted(split.folds[0].val) == list(range(74, 98))
    assert sorted(split.folds[1].val) == list(range(0, 24))
    assert sorted(split.folds[2].val) == list(range(25, 49))
    assert sorted(split.folds[3].val) == list(range(49, 73))


def test_sop_sizes():
    split = class_disjoint_split(22_634)
    assert len(split.trainval) == 11_317
    assert all(len(f.val) == 2_829 and len(f.train) == 11_317 - 2_829 for f in split.folds)


@pytest.mark.parametrize("n", list(range(16, 260)) + [727, 1001, 11_318])
def test_folds_are_class_disjoint_for_any_class_count(n):
    split = class_disjoint_split(n)
    assert not set(split.trainval) & set(split.test)
    assert sorted(split.trainval + split.test) == list(range(n))
    assert len(split.folds) == 4
    for fold in split.folds:
        assert not set(fold.train) & set(fold.val)
        assert len(set(fold.train)) == len(fold.train) and len(set(fold.val)) == len(fold.val)
        assert set(fold.train) | set(fold.val) <= set(split.trainval)
        assert len(fold.val) == n // 8
    # every validation window is disjoint from the others, as in the original code
    vals = [set(f.val) for f in split.folds]
    assert sum(map(len, vals)) == len(set().union(*vals))


def test_too_few_classes_is_a_clear_error():
    with pytest.raises(HarnessError, match="at least 16 classes"):
        class_disjoint_split(10)


def test_json_form_lists_sorted_positions():
    data = class_disjoint_split(200).as_dict()
    assert set(data) == {"test", "folds"}
    assert data["folds"][0]["val"] == list(range(75, 100))
    assert data["folds"][1]["train"] == list(range(25, 100))


def test_eval_classes_cut_what_validation_and_test_score_and_leave_training_alone():
    split = class_disjoint_split(200)
    cut = split.evaluated(8)
    assert cut.trainval == split.trainval and len(cut.test) == 8 and cut.test == tuple(sorted(split.test)[:8])
    for fold, whole in zip(cut.folds, split.folds, strict=True):
        assert fold.train == whole.train and fold.val == tuple(sorted(whole.val)[:8])
        assert not set(fold.val) & set(fold.train)  # still class-disjoint
    assert split.evaluated(0) is split


def test_a_protocol_with_eval_classes_scores_that_many_test_classes(tmp_path, tiny_protocol, data_root):
    import dataclasses

    from harness.benchmark import run_benchmark
    from harness.protocol import load_protocol

    protocol = dataclasses.replace(tiny_protocol, budget=dataclasses.replace(tiny_protocol.budget, eval_classes=6),
                                   search=dataclasses.replace(tiny_protocol.search, trials=1, reproductions=1))
    assert protocol.hash != tiny_protocol.hash and load_protocol("smoke").budget.eval_classes == 32
    record, _ = run_benchmark(loss_name="none", dataset="glyphs", protocol=protocol, results_dir=tmp_path / "r",
                              reports_dir=tmp_path / "p", data_root=data_root, progress=False)
    assert record.dataset["test_classes"] == 6 and len(record.split["test"]) == 6
    assert record.test["reproductions"][0]["concatenated"]["precision_at_1"] >= 0
