"""Hyperparameter search: one Optuna study per (dataset, protocol hash, loss), scored by 4-fold CV.

A trial trains one model per fold (train on the fold's train classes, validate on its validation
classes) and its value is the mean of the folds' best validation MAP@R. Any number of workers share
a study (harness.studies): each takes one trial at a time until the study holds the protocol's
number of counted trials, exactly. A trial queued again after its worker died keeps the folds it had
finished and trains only the rest. This stage only ever receives the trainval classes: the test half
is not loaded into anything it can reach.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import optuna
from tqdm.auto import tqdm

import losses
from harness.errors import LossRaised, RunFailed, TrialFailed
from harness.jobs import Jobs
from harness.modality import Items
from harness.protocol import Protocol
from harness.run_key import RunKey
from harness.seeding import derive_seed
from harness.splits import Split
from harness.studies.queue import FAIL_ERROR, FAIL_REASON, counts, run_trial, take_trial, wait
from harness.studies.storage import Storage, open_storage
from harness.studies.study import StudyIdentity, claim_worker_index, join_study, tpe_sampler
from harness.train import train_fold

__all__ = ["SearchResult", "run_search", "counted_trials", "search_result", "FAIL_REASON",
           "PRUNED_AFTER_FOLD", "search_target", "pruner"]

log = logging.getLogger("harness")

PRUNED_AFTER_FOLD = "pruned_after_fold"  # user attribute of a pruned trial: the last fold it trained


@dataclass(frozen=True)
class SearchResult:
    study_name: str
    best_params: dict
    best_value: float
    best_trial: int
    trials_counted: int
    trials: list[dict]  # every trial: number, state, params, value, fold figures, failure reason


def search_target(protocol: Protocol, loss_name: str) -> int:
    """The protocol's trial count; with nothing to search every trial would be the same, so one."""
    return protocol.search.trials if losses.search_space(loss_name) else 1


def counted_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that used up the budget: completed ones and those failed for a reason of their own.

    A trial interrupted by Ctrl-C or a dead worker is queued again with the same parameters.
    """
    return [t for t in study.get_trials(deepcopy=False) if counts(t)]


def _trial_summary(trial: optuna.trial.FrozenTrial) -> dict:
    return {"number": trial.number, "state": trial.state.name, "params": trial.params,
            "value": trial.value, **{k: v for k, v in sorted(trial.user_attrs.items())}}


def _train_search_fold(protocol: Protocol, loss_name: str, params: dict, train_set: Items, val_set: Items,
                       seed: int) -> tuple[float, int, dict]:
    """One fold of a trial, wherever it runs: its best validation MAP@R, the iteration it came at, and
    its training diagnostics (history per validation step, collapse flag)."""
    result = train_fold(protocol=protocol, loss_name=loss_name, hparams=params, train_set=train_set,
                        val_set=val_set, seed=seed)
    return result.best_val_map_at_r, result.best_iteration, {"history": result.history,
                                                            "collapsed": result.collapsed}


def _fold_scores(trial: optuna.Trial, trainval: Items, split: Split, protocol: Protocol, loss_name: str,
                 bar: tqdm, jobs: Jobs) -> float:
    """The trial's value: mean best validation MAP@R over the folds, trained side by side in `jobs`
    (each fold has its own seed, so the figures are the same however many run at once). Folds an
    earlier attempt at this trial finished are kept, not retrained."""
    params = losses.suggest(trial, loss_name)
    folds = len(split.folds)
    # finished: fold -> (score, best iteration, diagnostics), or (score, None, None) when kept from before
    finished, tasks = {}, []
    for f, fold in enumerate(split.folds):
        key = f"fold{f}_val_map_at_r"
        if key in trial.user_attrs:  # finished by an earlier attempt at this trial: same seed, same figure
            finished[f] = trial.user_attrs[key], None, None
        else:
            tasks.append((f, _train_search_fold, (protocol, loss_name, params, trainval.subset(fold.train),
                                                  trainval.subset(fold.val), derive_seed(protocol.search.seed,
                                                                                         "search", f))))
    scores: dict[int, float] = {}

    def take_in_order() -> None:
        """Folds enter the trial in order, whichever finished first, so the trial (and a pruning
        decision after each fold) is the same for any number of jobs."""
        while (f := len(scores)) < folds and f in finished:
            score, best_iteration, diagnostics = finished.pop(f)
            if best_iteration is not None:
                trial.set_user_attr(f"fold{f}_history", diagnostics["history"])
                trial.set_user_attr(f"fold{f}_collapsed", diagnostics["collapsed"])
                trial.set_user_attr(f"fold{f}_best_iteration", best_iteration)
                trial.set_user_attr(f"fold{f}_val_map_at_r", score)  # last: it marks the fold as finished
                bar.set_postfix(trial=trial.number, val_map_at_r=f"{score:.4f}")
            scores[f] = score
            bar.update()
            _report_fold(trial, scores, folds, protocol)

    take_in_order()
    for f, future in jobs.as_completed(tasks):  # leaving the loop early starts no further fold
        try:
            finished[f] = future.result()
        except TrialFailed as error:
            if isinstance(error, LossRaised):
                log.error("trial %d, fold %d: %s", trial.number, f, error, exc_info=error.__cause__)
            raise type(error)(f"fold {f}: {error}", error.error) from error.__cause__
        take_in_order()
    return float(np.mean([scores[f] for f in range(folds)]))


def _report_fold(trial: optuna.Trial, scores: dict[int, float], folds: int, protocol: Protocol) -> None:
    """Under a pruning protocol, tell the study the running mean after each fold, and stop a trial
    that cannot keep up (its later folds are never trained)."""
    if protocol.search.pruner == "none":
        return
    step, running_mean = len(scores) - 1, float(np.mean(list(scores.values())))
    trial.report(running_mean, step)
    if step < folds - 1 and trial.should_prune():
        trial.set_user_attr(PRUNED_AFTER_FOLD, step)
        raise optuna.TrialPruned(f"running mean {running_mean:.4f} after fold {step}")


def pruner(protocol: Protocol) -> optuna.pruners.BasePruner:
    """The protocol's pruner: none, or the median rule on fold-wise running means."""
    if protocol.search.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=protocol.search.pruner_startup_trials, n_warmup_steps=0)
    return optuna.pruners.NopPruner()


def _stop_if_every_trial_failed_alike(study: optuna.Study, loss_name: str, target: int) -> None:
    """A loss whose every trial so far failed with one and the same error will not do better: stop."""
    counted = counted_trials(study)
    errors = {t.user_attrs.get(FAIL_ERROR) for t in counted}
    if len(counted) >= min(2, target) and len(errors) == 1 and None not in errors:
        raise RunFailed(f"loss {loss_name}: every trial so far ({len(counted)}) failed with the same error, "
                        f"so the search stops: {errors.pop()}")


def run_search(trainval: Items, split: Split, protocol: Protocol, key: RunKey, *, storage: Storage | str,
               progress: bool = True, poll_seconds: float | None = None, jobs: Jobs | None = None) -> SearchResult:
    """Work on the study of `key` (with any other workers) until it holds the protocol's number of counted
    trials, one trial at a time, its folds trained side by side in `jobs` (default: one at a time, here)."""
    jobs = jobs or Jobs(1)
    storage = open_storage(storage) if isinstance(storage, str) else storage
    loss_name = key.loss
    target = search_target(protocol, loss_name)
    study = join_study(storage, key.study_name, StudyIdentity(key, protocol), stage="search")
    if len(counted_trials(study)) < target:
        study.sampler = tpe_sampler(protocol, target=target, trials_so_far=len(study.trials),
                                    worker_index=claim_worker_index(storage, study),
                                    several_workers=storage.several_workers)
        study.pruner = pruner(protocol)
        bar = tqdm(total=target * len(split.folds), desc=f"search {loss_name}", unit="fold", disable=not progress)
        try:
            while True:
                trial = take_trial(storage, study, budget=target)
                if trial is None:
                    if len(counted_trials(study)) >= target:
                        break
                    wait(poll_seconds or storage.poll_seconds)  # the rest runs in other workers and may come back
                    continue
                frozen = run_trial(storage, study, trial,
                                   lambda t: _fold_scores(t, trainval, split, protocol, loss_name, bar, jobs))
                if frozen.state == optuna.trial.TrialState.FAIL:
                    log.warning("trial %d failed: %s", frozen.number, frozen.user_attrs.get(FAIL_REASON))
                    _stop_if_every_trial_failed_alike(study, loss_name, target)
        finally:
            bar.close()
    return search_result(study)


def search_result(study: optuna.Study) -> SearchResult:
    """The best complete trial and a summary of every trial, read from the study alone."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        reasons = "; ".join(t.user_attrs.get(FAIL_REASON, "interrupted") for t in trials)
        raise RunFailed(f"every trial of study {study.study_name} failed: {reasons}")
    best = max(complete, key=lambda t: t.value)
    return SearchResult(study.study_name, dict(best.params), float(best.value), best.number,
                        len(counted_trials(study)), [_trial_summary(t) for t in trials])
