"""The test stage: the only code that reads the test half.

With the best hyperparameters, each reproduction trains one model per fold (new seeds, same fold
splits as the search), embeds the test classes, and scores them two ways, as the reality check
reported: "separated" (each fold model alone, the four scores averaged) and "concatenated" (the four
fold models' embeddings joined into one). Mean and a 95% Student-t interval over reproductions.
A query/gallery benchmark (In-Shop) scores its official queries against its official gallery.

Each (reproduction, fold) training is a unit: an enqueued trial of a test study that any worker can
take, whose test embeddings are saved under results/units/. A stopped test stage continues from its
finished units, and the figures equal an uninterrupted run's: every unit has its own fixed seed.
"""

from __future__ import annotations

import math
from concurrent.futures import Future
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState
from scipy import stats
from tqdm.auto import tqdm

from harness.atomic import atomic_open
from harness.baseline import is_baseline
from harness.errors import HarnessError, RunFailed, TrialFailed
from harness.jobs import Jobs, training_threads
from harness.metrics import retrieval_metrics, retrieval_metrics_query_reference
from harness.modality import Floor, Items
from harness.protocol import Protocol
from harness.run_key import RunKey
from harness.seeding import derive_seed
from harness.splits import Split
from harness.studies.queue import FAIL_REASON, fail_for_good, requeue, requeue_if_interrupted, take_trial, wait
from harness.studies.storage import Storage
from harness.train import build_model, check_embeddings, embed, train_fold

__all__ = ["METRICS", "MODES", "units_study_name", "units_dir", "queue_units", "run_test_units", "unit_progress",
           "failed_units", "collect_test", "floor_test", "summarize"]

METRICS = ("precision_at_1", "r_precision", "map_at_r")
MODES = ("separated", "concatenated")


def _scores(embeddings: np.ndarray, test: Items, per_query: dict | None = None,
            key: tuple[int, str] | None = None) -> dict[str, float]:
    """The three figures; with `per_query` (a dict), each query's hits go into it under `key`
    ((reproduction, mode)), and R per query under "relevant" (harness.per_query.pack)."""
    labels = test.labels.numpy()
    want = per_query is not None
    if test.roles is None:
        result = retrieval_metrics(embeddings, labels, per_query=want)
    else:
        query, gallery = test.roles == "query", test.roles == "gallery"
        result = retrieval_metrics_query_reference(embeddings[query], labels[query],
                                                   embeddings[gallery], labels[gallery], per_query=want)
    if want:
        per_query["relevant"] = result["per_query"]["relevant"]
        per_query[key] = result["per_query"]["hits"]
    return {m: result[m] for m in METRICS}


def units_study_name(key: RunKey) -> str:
    """The test stage's units live in a study of their own beside the search's."""
    return f"{key.study_name}__test"


def units_dir(results_dir: Path, test_study: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in test_study)
    return Path(results_dir) / "units" / safe


def _unit_path(directory: Path, rep: int, fold: int) -> Path:
    return directory / f"rep{rep}-fold{fold}.npy"


def queue_units(storage: Storage, study: optuna.Study, protocol: Protocol, split: Split, params: dict) -> None:
    """Queue every (reproduction, fold) training once, in order, for whichever worker takes it."""
    with storage.lock(study.study_name):
        if study.get_trials(deepcopy=False):
            return
        study.set_user_attr("best_params", params)
        for rep in range(protocol.search.reproductions):
            for f in range(len(split.folds)):
                study.enqueue_trial({}, user_attrs={"reproduction": rep, "fold": f})


def _train_test_unit(trainval: Items, test: Items, split: Split, protocol: Protocol, loss_name: str,
                     params: dict, rep: int, f: int) -> tuple[dict, np.ndarray]:
    """One reproduction's fold model, wherever it runs: train it (its own seed), embed the test half and
    score it; the embeddings go back too (the concatenated score needs every fold's)."""
    fold = split.folds[f]
    seed = derive_seed(protocol.search.seed, "test", rep, f)
    if is_baseline(loss_name):  # the network as initialised, with this unit's seed
        model, fold_info = build_model(protocol, test, seed), {}
    else:
        result = train_fold(protocol=protocol, loss_name=loss_name, hparams=params,
                            train_set=trainval.subset(fold.train), val_set=trainval.subset(fold.val), seed=seed)
        model = result.model
        fold_info = {"best_val_map_at_r": result.best_val_map_at_r, "best_iteration": result.best_iteration,
                     "iterations_run": result.iterations_run, "collapsed": result.collapsed,
                     "history": result.history}
    embeddings = embed(model, test, protocol)
    check_embeddings(embeddings, f"the test embeddings of unit (reproduction {rep}, fold {f})")
    return {"fold": f, "seed": seed, **fold_info, "test": _scores(embeddings, test)}, embeddings


def run_test_units(trainval: Items, test: Items, split: Split, protocol: Protocol, loss_name: str,
                   params: dict, *, storage: Storage, study: optuna.Study, directory: Path, progress: bool = True,
                   poll_seconds: float | None = None, jobs: Jobs | None = None) -> None:
    """Take test units (with any other workers) until every one is complete, up to `jobs` at once.
    The baseline (harness.baseline) scores untrained networks."""
    jobs = jobs or Jobs(1)
    done, total = unit_progress(study)
    bar = tqdm(total=total, initial=done, desc=f"test {loss_name}", unit="fold", disable=not progress)
    taken: dict[int, tuple[optuna.Trial, ExitStack]] = {}

    def units():  # a unit is taken from the study only when a job is free to run it
        while (trial := take_trial(storage, study, budget=None)) is not None:
            guard = ExitStack()
            guard.enter_context(storage.heartbeat(trial._trial_id))
            taken[trial.number] = trial, guard
            yield trial.number, _train_test_unit, (trainval, test, split, protocol, loss_name, params,
                                                   trial.user_attrs["reproduction"], trial.user_attrs["fold"])

    try:
        while True:
            for number, future in jobs.as_completed(units()):
                trial, guard = taken.pop(number)
                with guard, requeue_if_interrupted(study, trial):
                    failed = _finish_unit(study, trial, future, directory)
                if failed is not None:  # the loss worked in the search; here it must too
                    raise RunFailed(f"{loss_name}: " + _unit_failure(failed))
                bar.update()
            if unit_progress(study)[0] >= total:
                return
            wait(poll_seconds or storage.poll_seconds)  # the rest runs in other workers and may come back
    except BaseException:
        for trial, _ in taken.values():  # interrupted, or another unit failed: whoever comes next runs these
            requeue(study, trial)
        raise
    finally:
        for _, guard in taken.values():
            guard.close()
        bar.close()


def _finish_unit(study: optuna.Study, trial: optuna.Trial, future: Future, directory: Path) -> FrozenTrial | None:
    """Save a finished unit's embeddings and figures and complete its trial; a unit whose loss failed
    fails for good and is returned."""
    try:
        unit, embeddings = future.result()
    except TrialFailed as error:
        return fail_for_good(study, trial, error)
    with atomic_open(_unit_path(directory, trial.user_attrs["reproduction"], unit["fold"]), "wb") as handle:
        np.save(handle, embeddings)
    trial.set_user_attr("unit", unit)
    study.tell(trial, unit["test"]["map_at_r"])
    return None


def _unit_failure(trial: FrozenTrial) -> str:
    return (f"test unit (reproduction {trial.user_attrs.get('reproduction')}, fold {trial.user_attrs.get('fold')}) "
            f"failed: {trial.user_attrs.get(FAIL_REASON)}")


def failed_units(study: optuna.Study) -> list[str]:
    """Each test unit that failed for good, in words (unit and reason)."""
    return [_unit_failure(t) for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
            if FAIL_REASON in t.user_attrs]


def unit_progress(study: optuna.Study) -> tuple[int, int]:
    """(complete units, all units) of a test study."""
    trials = study.get_trials(deepcopy=False)
    return sum(t.state == TrialState.COMPLETE for t in trials), len({
        (t.user_attrs.get("reproduction"), t.user_attrs.get("fold")) for t in trials})


def collect_test(study: optuna.Study, test: Items, protocol: Protocol, split: Split, directory: Path,
                 per_query: dict | None = None) -> dict:
    """The test figures from the finished units: per fold as each unit scored it, concatenated from their
    saved embeddings; the same figures however many workers ran the units, in whatever order.

    With `per_query` (a dict), every query's hits of every fold model and of the concatenation are
    added to it (see _scores), scored from the saved embeddings."""
    units = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        units[trial.user_attrs["reproduction"], trial.user_attrs["fold"]] = trial.user_attrs["unit"]
    reproductions = []
    for rep in range(protocol.search.reproductions):
        folds = [units[rep, f] for f in range(len(split.folds))]
        paths = [_unit_path(directory, rep, f) for f in range(len(split.folds))]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise HarnessError(f"the test embeddings {', '.join(missing)} are missing; the worker that made them "
                               "wrote them under its own --results, which every worker must share")
        fold_embeddings = [np.load(p) for p in paths]
        concatenated = _scores(np.concatenate(fold_embeddings, axis=1), test, per_query, (rep, "concatenated"))
        if per_query is not None:
            with training_threads():  # the threads each unit was scored on, so the same search
                for f, embeddings in enumerate(fold_embeddings):
                    _scores(embeddings, test, per_query, (rep, f"fold{f}"))
        separated = {m: float(np.mean([fold["test"][m] for fold in folds])) for m in METRICS}
        reproductions.append({"reproduction": rep, "folds": folds, "separated": separated,
                              "concatenated": concatenated})
    return {"reproductions": reproductions, "summary": summarize(reproductions)}


def floor_test(floor: Floor, search_half: Items, test: Items) -> tuple[dict, dict]:
    """A floor's test figures and its per-query hits (see _scores): fitted on the search half, one embedding
    of the test half scored once. No folds and no seed, so one reproduction, whose one model is both its
    separated and its concatenated figure (the 95% CI, over one reproduction, is NaN)."""
    embeddings = floor.embed(search_half, test)
    check_embeddings(embeddings, f"the test embeddings of floor {floor.name}")
    per_query: dict = {}
    figures = _scores(embeddings, test, per_query, (0, "concatenated"))
    reproductions = [{"reproduction": 0, "folds": [], "separated": dict(figures), "concatenated": figures}]
    return {"reproductions": reproductions, "summary": summarize(reproductions)}, per_query


def summarize(reproductions: list[dict]) -> dict:
    """Mean and 95% Student-t half-width per mode and metric (NaN half-width for one reproduction)."""
    summary = {}
    for mode in MODES:
        for metric in METRICS:
            values = np.array([rep[mode][metric] for rep in reproductions], dtype=float)
            n = len(values)
            half_width = (float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n))
                          if n > 1 else math.nan)
            summary[f"{mode}_{metric}"] = {"mean": float(values.mean()), "ci95": half_width}
    return summary
