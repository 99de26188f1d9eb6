"""Taking work from a study, one trial at a time, so any number of workers share it exactly.

A worker takes a trial under the storage's lock: a queued one first (a unit of the test stage, or a
trial queued again after its worker died), otherwise a new one only while the running and counted
trials are fewer than the budget. So the protocol's trial count is never exceeded, whatever the
number of processes. The trial then runs with a heartbeat; if it is interrupted (Ctrl-C, SIGTERM from a
scheduler) it is failed and queued again with its parameters and the folds it had finished.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import optuna
from optuna.trial import FrozenTrial, TrialState

from harness.errors import TrialFailed
from harness.studies.storage import WORKER, Storage, retry_callback, worker_identity

__all__ = ["FAIL_REASON", "FAIL_ERROR", "MAX_REQUEUES", "WORKER", "counts", "take_trial", "run_trial",
           "requeue_if_interrupted", "requeue", "fail_for_good", "wait"]

FAIL_REASON = "fail_reason"  # user attribute of a trial that failed for a reason of its own: it used its budget
FAIL_ERROR = "fail_error"  # the exception type and message alone, to tell one repeated error from many
# A trial queued again more than this many times (interrupted, or its worker died, each time) fails for
# good when taken once more: an interruption that comes back every time (a crash the trial itself causes, a
# worker killed for memory) is the trial's own failure, and must not loop.
MAX_REQUEUES = 3


def counts(trial: FrozenTrial) -> bool:
    """A trial that used up budget: complete, pruned by the protocol's pruner, or failed for a reason of
    its own (a NaN loss, a loss that raised). One failed by an interruption or a dead worker is queued again instead."""
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.state == TrialState.FAIL and FAIL_REASON in trial.user_attrs)


def take_trial(storage: Storage, study: optuna.Study, *, budget: int | None) -> optuna.Trial | None:
    """The next trial this worker should run, or None when there is none to take now.

    `budget=None` takes only queued trials (the test stage's units); otherwise a new trial is asked
    while running plus counted trials are fewer than `budget`.
    """
    with storage.lock(study.study_name):
        storage.recover_dead_trials(study)
        while True:
            trials = study.get_trials(deepcopy=False)
            if not any(t.state == TrialState.WAITING for t in trials):
                if budget is None or sum(t.state == TrialState.RUNNING or counts(t) for t in trials) >= budget:
                    return None
            trial = study.ask()
            trial.set_user_attr(WORKER, worker_identity())
            storage.first_beat(trial._trial_id)  # a worker killed from here on leaves a trial that goes stale
            if not _requeued_too_often(study, trial):
                return trial


def _requeued_too_often(study: optuna.Study, trial: optuna.Trial) -> bool:
    """Fail `trial` for good if it has been queued again more than MAX_REQUEUES times; True if so."""
    history = study._storage.get_trial(trial._trial_id).system_attrs.get("retry_history", [])
    if len(history) <= MAX_REQUEUES:
        return False
    reason = (f"queued again {len(history)} times (more than {MAX_REQUEUES}; earlier attempts: trials "
              f"{', '.join(map(str, history))}), each time interrupted or its worker gone; failed for good so that "
              "it cannot loop")
    trial.set_user_attr(FAIL_REASON, reason)
    trial.set_user_attr(FAIL_ERROR, f"queued again more than {MAX_REQUEUES} times")
    study.tell(trial, state=TrialState.FAIL)
    return True


def run_trial(storage: Storage, study: optuna.Study, trial: optuna.Trial,
              work: Callable[[optuna.Trial], float]) -> FrozenTrial:
    """Run `work(trial)` with a heartbeat and tell the study how it ended.

    A TrialFailed (a NaN loss, a loss that raised) fails the trial with its reason stored, a
    TrialPruned prunes it (the protocol's pruner stopped it after a fold); anything
    else (Ctrl-C, SIGTERM, a bug) fails it, queues it again for another worker, and propagates.
    """
    with storage.heartbeat(trial._trial_id), requeue_if_interrupted(study, trial):
        try:
            value = work(trial)
        except TrialFailed as error:
            return fail_for_good(study, trial, error)
        except optuna.TrialPruned:
            return study.tell(trial, state=TrialState.PRUNED)
    return study.tell(trial, value)


@contextmanager
def requeue_if_interrupted(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """Any exception escaping the block fails the trial and queues it again, with its parameters and
    the user attributes (finished folds) it has so far, then propagates."""
    try:
        yield
    except BaseException:
        requeue(study, trial)
        raise


def requeue(study: optuna.Study, trial: optuna.Trial) -> None:
    """Fail an interrupted trial and queue it again for whichever worker comes next."""
    frozen = study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    retry_callback()(study, frozen)


def fail_for_good(study: optuna.Study, trial: optuna.Trial, error: TrialFailed) -> FrozenTrial:
    """A trial that failed for a reason of its own: it counts against the budget, with its reason stored."""
    trial.set_user_attr(FAIL_REASON, str(error))
    trial.set_user_attr(FAIL_ERROR, error.error)
    return study.tell(trial, state=TrialState.FAIL)


def wait(seconds: float) -> None:
    """Nothing to take while other workers run: look again later (their work may come back)."""
    time.sleep(seconds)
