"""Pruning as a protocol choice: hashed, stops a trial that cannot keep up after a fold, the same for any --jobs."""

from __future__ import annotations

import dataclasses

import optuna
import pytest

from harness.benchmark import loss_section, run_benchmark, run_key
from harness.errors import HarnessError
from harness.image.data import dataset_version
from harness.protocol import protocol_from_dict
from harness.studies.storage import open_storage
from harness.studies.study import StudyIdentity, join_study

LOSSES = '''
import torch
from optuna.distributions import FloatDistribution
from losses import declare_loss
from losses.triplet import BatchHardTripletLoss


@declare_loss(space={"margin": FloatDistribution(0.0, 1.0)}, defaults={"margin": 0.2},
              description="batch-hard triplets, or (margin above 0.5) no learning at all", paper="a test's own loss")
class LearnsWhenSmall(torch.nn.Module):
    def __init__(self, margin=0.2):
        super().__init__()
        self.margin = margin
        self.triplets = BatchHardTripletLoss(margin=margin)

    def forward(self, embeddings, labels):
        return self.triplets(embeddings, labels) if self.margin <= 0.5 else embeddings.sum() * 0.0
'''


def _pruned(protocol, **search):
    return dataclasses.replace(protocol, search=dataclasses.replace(protocol.search, **search))


def test_the_pruner_is_part_of_the_protocol_and_its_hash(tiny_protocol):
    median = _pruned(tiny_protocol, pruner="median")
    assert median.hash != tiny_protocol.hash
    assert "pruner" not in tiny_protocol.canonical_dict()["search"]  # existing hashes are unchanged
    assert _pruned(median, pruner_startup_trials=3).hash != median.hash
    with pytest.raises(HarnessError, match="search.pruner must be one of none, median"):
        protocol_from_dict({"name": "p", "version": 1, "description": "d", "search": {"pruner": "hyperband"}})


@pytest.mark.slow
def test_a_trial_that_cannot_keep_up_stops_after_a_fold_the_same_for_any_jobs(tmp_path, tiny_protocol, data_root):
    module = tmp_path / "prunable.py"
    module.write_text(LOSSES)
    loss = f"{module}:LearnsWhenSmall"
    protocol = _pruned(tiny_protocol.with_overrides(trials=3, reproductions=1), pruner="median",
                       pruner_startup_trials=1)
    records = {}
    for jobs in (1, 2):
        results = tmp_path / f"jobs{jobs}"
        storage = open_storage(f"sqlite:///{results / 'studies.db'}")
        key = run_key("glyphs", dataset_version("glyphs", image_size=16, root=data_root), protocol, loss_section(loss))
        study = join_study(storage, key.study_name, StudyIdentity(key, protocol), stage="search")
        for margin in (0.2, 0.9, 0.3):  # the second learns nothing: it falls below the first
            study.enqueue_trial({"margin": margin})
        records[jobs] = run_benchmark(loss_name=loss, dataset="glyphs", protocol=protocol, results_dir=results,
                                      reports_dir=tmp_path / f"reports{jobs}", data_root=data_root, progress=False,
                                      jobs=jobs)[0]
    search = records[1].search
    states = [t["state"] for t in search["trials"]]
    assert states[1] == "PRUNED" and states.count("PRUNED") == search["pruned_trials"] >= 1
    pruned = search["trials"][1]
    after = pruned["pruned_after_fold"]
    assert after < 3 and f"fold{after}_val_map_at_r" in pruned and f"fold{after + 1}_val_map_at_r" not in pruned
    assert search["fold_trainings_saved"] == sum(3 - t["pruned_after_fold"] for t in search["trials"]
                                                 if t["state"] == "PRUNED")
    assert search["trials_counted"] == 3 and search["best_params"]["margin"] != 0.9
    assert records[1].test == records[2].test
    assert [{**t, "worker": None} for t in search["trials"]] == [
        {**t, "worker": None} for t in records[2].search["trials"]]
    print(f"pruned: trial states {states}, fold trainings saved {search['fold_trainings_saved']}")
    assert optuna.load_study(study_name=search["study"], storage=f"sqlite:///{tmp_path / 'jobs1' / 'studies.db'}"
                             ).trials[1].state == optuna.trial.TrialState.PRUNED
