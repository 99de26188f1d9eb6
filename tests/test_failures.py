"""The three kinds of failure stay apart: bad input, a failed trial, an interruption (queued again, not forever)."""

from __future__ import annotations

import pickle

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from harness.errors import HarnessError, LossNotFinite, RunFailed, TrainingNotFinite, TrialFailed
from harness.studies.queue import FAIL_REASON, MAX_REQUEUES, counts, requeue, take_trial
from harness.studies.storage import open_storage
from harness.train import check_embeddings


def test_a_failed_trial_is_never_bad_input_and_survives_a_worker_process():
    for kind in (TrialFailed, LossNotFinite, TrainingNotFinite):
        assert not issubclass(kind, HarnessError)
        error = pickle.loads(pickle.dumps(kind("loss 'x' became nan at iteration 3", "became nan")))
        assert type(error) is kind and str(error) == "loss 'x' became nan at iteration 3"
        assert error.error == "became nan"
    assert not issubclass(RunFailed, HarnessError) and not issubclass(RunFailed, TrialFailed)


def test_non_finite_embeddings_fail_the_training_naming_what_and_where():
    embeddings = np.ones((5, 3), dtype=np.float32)
    check_embeddings(embeddings, "validation embeddings at iteration 6")
    embeddings[3, 1] = np.nan
    embeddings[4, 0] = np.inf
    with pytest.raises(TrainingNotFinite, match=r"validation embeddings at iteration 6 are non-finite \(nan at row 3, "
                                                r"column 1, 2 of 5 rows\)") as raised:
        check_embeddings(embeddings, "validation embeddings at iteration 6")
    assert raised.value.error == "validation embeddings non-finite"


def _study(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'studies.db'}")
    return storage, optuna.create_study(study_name="s", storage=storage.optuna_storage, direction="maximize")


def test_a_trial_requeued_past_the_limit_fails_for_good_and_counts(tmp_path):
    storage, study = _study(tmp_path)
    study.enqueue_trial({"margin": 0.3}, user_attrs={"fold0_val_map_at_r": 0.5})
    numbers = []
    for _ in range(MAX_REQUEUES + 1):  # taken, then interrupted (a crash the trial itself causes), each time
        trial = take_trial(storage, study, budget=2)
        assert trial.suggest_float("margin", 0.0, 1.0) == 0.3  # the same trial came back, with its parameters
        numbers.append(trial.number)
        requeue(study, trial)
    # taken once more: it has been queued again more than MAX_REQUEUES times, so it fails for good; the next is new
    fresh = take_trial(storage, study, budget=2)
    trials = study.get_trials(deepcopy=False)
    gone = next(t for t in trials if t.number == numbers[-1] + 1)
    assert gone.state == TrialState.FAIL and counts(gone)
    assert f"queued again {MAX_REQUEUES + 1} times" in gone.user_attrs[FAIL_REASON] and "cannot loop" in \
        gone.user_attrs[FAIL_REASON]
    assert fresh is not None and fresh.number == gone.number + 1
    # the budget of 2 is now used up: the failed trial and the one running
    assert take_trial(storage, study, budget=2) is None


def test_a_test_unit_requeued_past_the_limit_fails_for_good_without_asking_a_new_one(tmp_path):
    storage, study = _study(tmp_path)
    study.enqueue_trial({}, user_attrs={"reproduction": 0, "fold": 1})
    for _ in range(MAX_REQUEUES + 1):
        requeue(study, take_trial(storage, study, budget=None))
    assert take_trial(storage, study, budget=None) is None  # units are only ever queued, never asked anew
    last = study.get_trials(deepcopy=False)[-1]
    assert last.state == TrialState.FAIL and FAIL_REASON in last.user_attrs
    assert last.user_attrs["reproduction"] == 0 and last.user_attrs["fold"] == 1
