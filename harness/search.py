"""Hyperparameter search: one Optuna study per (dataset, protocol hash, loss), scored by 4-fold CV.

A trial trains one model per fold (train on the fold's train classes, validate on its validation
classes) and its value is the mean of the folds' best validation MAP@R. The study lives in an
Optuna storage (SQLite by default), so re-running the same command continues it up to the
protocol's trial count instead of starting over. This stage only ever receives the trainval
classes: the test half is not loaded into anything it can reach.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import optuna
from tqdm.auto import tqdm

import losses
from harness.data import ImageSet
from harness.errors import HarnessError, LossNotFinite
from harness.protocol import Protocol
from harness.seeding import derive_seed
from harness.splits import Split
from harness.train import train_fold

__all__ = ["SearchResult", "run_search", "study_name", "counted_trials"]

FAIL_REASON = "fail_reason"


@dataclass(frozen=True)
class SearchResult:
    study_name: str
    best_params: dict
    best_value: float
    best_trial: int
    trials_counted: int
    trials: list[dict]  # every trial: number, state, params, value, fold figures, failure reason


def study_name(dataset: str, protocol: Protocol, loss_name: str) -> str:
    """One study per dataset, protocol hash, loss and loss source: a changed loss starts afresh."""
    source = (losses.source_sha256(loss_name) or "unknown")[:12]
    return f"{dataset}__{protocol.name}-{protocol.short_hash}__{loss_name}-{source}"


def counted_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that used up the budget: completed ones and those failed by a non-finite loss.

    A trial interrupted by Ctrl-C or a crash is failed by Optuna without a reason and is run again.
    """
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE
            or (t.state == optuna.trial.TrialState.FAIL and FAIL_REASON in t.user_attrs)]


def _trial_summary(trial: optuna.trial.FrozenTrial) -> dict:
    return {"number": trial.number, "state": trial.state.name, "params": trial.params,
            "value": trial.value, **{k: v for k, v in sorted(trial.user_attrs.items())}}


def run_search(trainval: ImageSet, split: Split, protocol: Protocol, loss_name: str, *, dataset: str,
               storage: str, progress: bool = True) -> SearchResult:
    """Run (or continue) the study until it holds the protocol's number of counted trials."""
    optuna.logging.set_verbosity(logging.WARNING)
    has_space = bool(losses.search_space(loss_name))
    # with nothing to search every trial would be the same configuration: one trial is enough
    target = protocol.search.trials if has_space else 1
    name = study_name(dataset, protocol, loss_name)
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize",
                                    load_if_exists=True)
    except Exception as error:  # Optuna raises many storage error types; name the URL in one line
        raise HarnessError(f"cannot open Optuna storage {storage}: {error}") from error
    done = len(counted_trials(study))
    if done < target:
        # seeded from the protocol seed and the trials so far, so a resumed study does not repeat
        # the first configurations of its random start-up phase
        study.sampler = optuna.samplers.TPESampler(
            seed=derive_seed(protocol.search.seed, "tpe", len(study.trials)),
            n_startup_trials=min(10, max(1, target // 2)), multivariate=True)

        bar = tqdm(total=(target - done) * len(split.folds), desc=f"search {loss_name}", unit="fold",
                   disable=not progress)

        def objective(trial: optuna.Trial) -> float:
            params = losses.suggest(trial, loss_name)
            scores = []
            for f, fold in enumerate(split.folds):
                try:
                    result = train_fold(protocol=protocol, loss_name=loss_name, hparams=params,
                                        train_set=trainval.subset(fold.train),
                                        val_set=trainval.subset(fold.val),
                                        seed=derive_seed(protocol.search.seed, "search", f))
                except LossNotFinite as error:
                    trial.set_user_attr(FAIL_REASON, f"fold {f}: {error}")
                    raise
                scores.append(result.best_val_map_at_r)
                trial.set_user_attr(f"fold{f}_val_map_at_r", result.best_val_map_at_r)
                trial.set_user_attr(f"fold{f}_best_iteration", result.best_iteration)
                bar.update()
                bar.set_postfix(trial=trial.number, val_map_at_r=f"{result.best_val_map_at_r:.4f}")
            return float(np.mean(scores))

        try:
            study.optimize(objective, n_trials=target - done, catch=(LossNotFinite,))
        finally:
            bar.close()
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        reasons = "; ".join(t.user_attrs.get(FAIL_REASON, "interrupted") for t in study.trials)
        raise HarnessError(f"every trial of study {name} failed: {reasons}")
    best = max(complete, key=lambda t: t.value)
    return SearchResult(name, dict(best.params), float(best.value), best.number,
                        len(counted_trials(study)), [_trial_summary(t) for t in study.trials])
