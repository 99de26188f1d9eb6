"""One benchmark run: validate inputs, search on trainval, test on the held-out half, record, publish.

Every input is checked before anything is written under `results/`: the names, the dataset's files
(listed, present, decoded into the image cache), the split against the batch, and the network itself
(built once, weights loaded and checked, one batch through it), so bad input leaves `results/` untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import optuna

import losses
from harness.baseline import FLOOR_ROLE, baseline_loss, baseline_search, floor_loss, is_baseline, role_of
from harness.dataset_names import dataset_label
from harness.errors import HarnessError, RunFailed
from harness.evaluate import (
    collect_test,
    failed_units,
    floor_test,
    queue_units,
    run_test_units,
    unit_progress,
    units_dir,
    units_study_name,
)
from harness.jobs import THREADS_PER_TRAINING, Jobs
from harness.modality import Items, Modality, check_kind, floor_named, room_of
from harness.per_query import pack, write_per_query
from harness.protocol import Protocol
from harness.publish import publish
from harness.records import (
    RunRecord,
    environment,
    load_record,
    new_run_id,
    newest_complete_runs,
    record_path,
    write_record,
)
from harness.run_key import RunKey
from harness.search import PRUNED_AFTER_FOLD, SearchResult, counted_trials, run_search, search_result, search_target
from harness.seeding import derive_seed
from harness.splits import Split, class_disjoint_split
from harness.studies.storage import Storage, open_storage
from harness.studies.study import FINISHED, StudyIdentity, join_study

__all__ = ["RunContext", "run_benchmark", "default_storage", "check_loss_name", "check_inputs", "loss_section",
           "run_key", "completed_run", "prepare_run", "search_stage", "test_stage", "record_stage",
           "floor_stage", "write_record_once"]


def default_storage(results_dir: Path) -> str:
    return f"sqlite:///{(Path(results_dir) / 'studies.db').resolve()}"


def check_loss_name(loss_name: str, modality: Modality | None = None) -> None:
    """A loss of the zoo or a plug-in, the baseline, or a floor (of `modality`'s, where given)."""
    if is_baseline(loss_name):
        return
    floor = floor_named(loss_name)
    if floor is None:
        losses.info(loss_name)  # raises LossError listing the known losses
    elif modality is not None and loss_name not in modality.floors:
        found = ", ".join(modality.floors) or "none"
        raise HarnessError(f"{loss_name} is a floor of another input kind; the {modality.name} floors: {found}")


def check_inputs(loss_name: str, dataset: str, protocol: Protocol) -> Modality:
    """The checks that need no data: names, and that the protocol is of the dataset's kind and fits it.
    Returns the dataset's modality."""
    check_loss_name(loss_name)
    modality = check_kind(dataset, protocol)
    check_loss_name(loss_name, modality)
    modality.check_inputs(dataset, protocol)
    return modality


def _check_data_fits(data: Items, split: Split, protocol: Protocol) -> None:
    """Every fold can fill a batch, and the network takes the items (its modality puts one batch through it)."""
    per_batch = (2 if protocol.batch.sampler == "group_by_label"
                 else protocol.batch.batch_size // protocol.batch.m_per_class)
    fewest = min(len(fold.train) for fold in split.folds)
    if fewest < per_batch:
        raise HarnessError(f"dataset {data.name}: a fold trains on only {fewest} classes, but a batch of the protocol "
                           f"needs {per_batch} ({protocol.batch.batch_size} = {per_batch} x "
                           f"{protocol.batch.m_per_class})")
    room_of(data).check_fits(data, split, protocol)


def loss_section(loss_name: str) -> dict:
    """The record's loss section: name, paper, search space and the identity of the code it runs
    (computed here, once per run; the run key carries it from here on)."""
    if is_baseline(loss_name):
        return baseline_loss()
    floor = floor_named(loss_name)
    if floor is not None:
        return floor_loss(floor.name, floor.description, floor.identity())
    summary = losses.summary(loss_name)
    return {
        "name": loss_name,
        "class": summary["class"],
        "description": summary["description"],
        "paper": summary["paper"],
        "identity": summary["identity"],
        "search_space": {k: losses.describe(v) for k, v in losses.search_space(loss_name).items()},
        # Optuna's own form, so a report can rebuild the study (importances) from the record alone
        "search_distributions": summary["space"],
    }


def run_key(dataset: str, dataset_version: str | None, protocol: Protocol, loss: dict) -> RunKey:
    """The key of a run of the loss section `loss` (see loss_section)."""
    return RunKey(dataset, dataset_version, protocol.hash, loss["name"], loss["identity"], protocol_name=protocol.name)


def completed_run(results_dir: Path, key: RunKey) -> str | None:
    """The newest complete run of exactly this key, if any: lets a long series of benchmarks (`make zoo`)
    continue where it stopped instead of redoing runs, and never skips a loss whose code changed."""
    record = newest_complete_runs(results_dir).get(key)
    return record.run_id if record else None


@dataclass
class RunContext:
    """What the stages of one run share: made by `prepare_run`, given its pool of jobs by `run_benchmark`,
    filled in by `search_stage`."""

    key: RunKey
    protocol: Protocol
    loss: dict
    data: Items
    split: Split
    trainval: Items
    store: Storage
    results_dir: Path
    reports_dir: Path
    environment: dict
    jobs: Jobs | None = None
    progress: bool = True
    take_work: bool = True
    poll_seconds: float | None = None
    search: dict | None = None
    search_study: str | None = None

    @property
    def test_study(self) -> str:
        return units_study_name(self.key)


def prepare_run(*, loss_name: str, dataset: str, protocol: Protocol, results_dir: Path, reports_dir: Path,
                storage: str | None, data_root: Path | None, progress: bool, heartbeat_seconds: int,
                take_work: bool = True, poll_seconds: float | None = None) -> RunContext:
    """Every check before anything is written: names, the data (listed and decoded), the split against the
    batch, the network (one batch through it); then the run's key and the storage."""
    modality = check_inputs(loss_name, dataset, protocol)
    loss = loss_section(loss_name)
    env = environment()  # the commit and the versions as the run starts: the code that ran
    data = modality.load(dataset, protocol, root=data_root, progress=progress)
    split = class_disjoint_split(data.num_classes, protocol.search.folds, trainval_classes=data.trainval_classes)
    split = split.evaluated(protocol.budget.eval_classes)  # what validation and test score (all, unless a check)
    trainval = data.subset(split.trainval)
    _check_data_fits(trainval, split, protocol)
    store = open_storage(storage or default_storage(Path(results_dir)), heartbeat_seconds=heartbeat_seconds)
    return RunContext(key=run_key(dataset_label(dataset), data.version, protocol, loss), protocol=protocol, loss=loss,
                      data=data, split=split, trainval=trainval, store=store, results_dir=Path(results_dir),
                      reports_dir=Path(reports_dir), environment=env, progress=progress, take_work=take_work,
                      poll_seconds=poll_seconds)


def search_stage(ctx: RunContext) -> None:
    """The search stage: the best hyperparameters on the train/validation half (nothing for the baseline)."""
    if is_baseline(ctx.key.loss):
        ctx.search, ctx.search_study = baseline_search(), None
    elif ctx.take_work:
        result = run_search(ctx.trainval, ctx.split, ctx.protocol, ctx.key, storage=ctx.store,
                            progress=ctx.progress, poll_seconds=ctx.poll_seconds, jobs=ctx.jobs)
        ctx.search, ctx.search_study = _search_record(result, ctx.store, ctx.protocol, ctx.split), result.study_name
    else:
        ctx.search = _finished_search(ctx.store, ctx.key, ctx.protocol, ctx.split)
        ctx.search_study = ctx.key.study_name


def test_stage(ctx: RunContext) -> optuna.Study:
    """The test stage, the only one that reads the test half: every (reproduction, fold) unit done."""
    test_study = join_study(ctx.store, ctx.test_study, StudyIdentity(ctx.key, ctx.protocol), stage="test")
    queue_units(ctx.store, test_study, ctx.protocol, ctx.split, ctx.search["best_params"])
    if ctx.take_work:
        # the test half is materialised only now, after the search has finished
        run_test_units(ctx.trainval, ctx.data.subset(ctx.split.test), ctx.split, ctx.protocol, ctx.key.loss,
                       ctx.search["best_params"], storage=ctx.store, study=test_study,
                       directory=units_dir(ctx.results_dir, ctx.test_study), progress=ctx.progress,
                       poll_seconds=ctx.poll_seconds, jobs=ctx.jobs)
    failed = failed_units(test_study)
    if failed:
        raise RunFailed(f"{ctx.key.loss}: " + "; ".join(failed) + "; the run has no record (its test figures "
                        "would lack these units)")
    done, total = unit_progress(test_study)
    if done < total:
        raise RunFailed(f"{done} of {total} test units of {ctx.key.loss} are done; start a worker "
                        "(harness worker, same options) to finish them")
    return test_study


def record_stage(ctx: RunContext, test_study: optuna.Study) -> tuple[RunRecord, bool]:
    """The record stage: written once, whichever worker gets here first. Returns (record, written now)."""
    test_set = ctx.data.subset(ctx.split.test)
    directory = units_dir(ctx.results_dir, ctx.test_study)

    def describe_run(run_id: str) -> RunRecord:
        per_query: dict = {}
        test_figures = collect_test(test_study, test_set, ctx.protocol, ctx.split, directory, per_query)
        # beside the record, and written before it: a record never names a file that is not there
        relevant = per_query.pop("relevant")
        test_figures["per_query"] = write_per_query(ctx.results_dir / "runs" / run_id, pack(relevant, per_query))
        started_at = _started_at(ctx.store, [ctx.search_study, ctx.test_study])
        return _record(ctx, run_id, started_at, ctx.search, test_figures, jobs=ctx.jobs.jobs)

    return write_record_once(ctx.store, ctx.results_dir, [ctx.test_study, ctx.search_study],
                             new_run_id(ctx.key.dataset, ctx.protocol.name, ctx.key.loss), describe_run)


def floor_stage(ctx: RunContext) -> tuple[RunRecord, bool]:
    """A floor's whole run after prepare: fitted on the search half, scored on the test half once, recorded.
    Nothing is searched or queued (no seed, no units), so no study is made; the record is written atomically.
    Like a finished study's, a floor's existing record of this key is the answer. Returns (record, written now)."""
    done = completed_run(ctx.results_dir, ctx.key)
    if done:
        return load_record(record_path(ctx.results_dir, done)), False
    started = datetime.now(UTC)
    test_set = ctx.data.subset(ctx.split.test)
    test_figures, per_query = floor_test(floor_named(ctx.key.loss), ctx.trainval, test_set)
    run_id = new_run_id(ctx.key.dataset, ctx.protocol.name, ctx.key.loss)
    relevant = per_query.pop("relevant")
    test_figures["per_query"] = write_per_query(ctx.results_dir / "runs" / run_id, pack(relevant, per_query))
    run = _record(ctx, run_id, started.isoformat(), baseline_search(), test_figures, jobs=1)
    write_record(ctx.results_dir, run)
    return run, True


def _record(ctx: RunContext, run_id: str, started_at: str, search: dict, test_figures: dict, *,
            jobs: int) -> RunRecord:
    """The run's record, finished now."""
    test_set = ctx.data.subset(ctx.split.test)
    finished = datetime.now(UTC)
    return RunRecord(
        run_id=run_id, status="complete", started_at=started_at, finished_at=finished.isoformat(),
        wall_seconds=round((finished - datetime.fromisoformat(started_at)).total_seconds(), 2),
        dataset={"name": ctx.key.dataset, "version": ctx.key.dataset_version, "official": ctx.data.official,
                 "num_classes": ctx.data.num_classes, "num_items": len(ctx.data),
                 "trainval_classes": len(ctx.split.trainval), "test_classes": len(ctx.split.test),
                 "test_items": len(test_set), **ctx.data.details},
        protocol=ctx.protocol.to_dict(), protocol_hash=ctx.protocol.hash, loss=ctx.loss,
        split=ctx.split.as_dict(), search=search, test=test_figures, seed=ctx.protocol.search.seed,
        environment={**ctx.environment, "jobs": jobs, "threads_per_training": THREADS_PER_TRAINING})


def run_benchmark(*, loss_name: str, dataset: str, protocol: Protocol, results_dir: Path, reports_dir: Path,
                  storage: str | None = None, data_root: Path | None = None, progress: bool = True,
                  take_work: bool = True, heartbeat_seconds: int = 60, poll_seconds: float | None = None,
                  jobs: int = 1) -> tuple[RunRecord, dict | None]:
    """Run the whole protocol for one loss (or the untrained baseline): prepare -> search -> test -> record
    -> publish. Returns the record and, when this process wrote it, the tables it published (else None).

    This process is one worker of the study: any other process running the same command (`harness
    worker`) shares the search trials and the test units with it. The record is written once, by the
    process that finds every unit done; with `take_work=False` (`harness record`) nothing is trained.
    `jobs` trainings run side by side (a trial's folds, the test units), each on fixed threads, so the
    figures are the same for any number.
    """
    ctx = prepare_run(loss_name=loss_name, dataset=dataset, protocol=protocol, results_dir=results_dir,
                      reports_dir=reports_dir, storage=storage, data_root=data_root, progress=progress,
                      heartbeat_seconds=heartbeat_seconds, take_work=take_work, poll_seconds=poll_seconds)
    if role_of(ctx.loss) == FLOOR_ROLE:  # no network: nothing to search, queue or share with workers
        run, written = floor_stage(ctx)
        return run, publish(ctx.results_dir, ctx.reports_dir, redraw=False) if written else None
    with ctx.store.sole_worker(ctx.key.study_name), Jobs(jobs) as ctx.jobs:
        search_stage(ctx)
        test_study = test_stage(ctx)
        run, written = record_stage(ctx, test_study)
    tables = publish(ctx.results_dir, ctx.reports_dir, redraw=False) if written else None  # only the new plot
    return run, tables


def _started_at(store: Storage, studies: list[str | None]) -> str:
    """When the run's first study was created: the run's start, whichever worker created it."""
    for name in filter(None, studies):
        created = optuna.load_study(study_name=name, storage=store.optuna_storage).user_attrs.get("created_at")
        if created:
            return created
    return datetime.now(UTC).isoformat()


def _search_record(search: SearchResult, store: Storage, protocol: Protocol, split: Split) -> dict:
    return {"study": search.study_name, "storage": store.shown, "trials_counted": search.trials_counted,
            "best_params": search.best_params, "best_value": search.best_value, "best_trial": search.best_trial,
            "trials": search.trials,
            "pruned_trials": sum(t["state"] == "PRUNED" for t in search.trials),
            "fold_trainings_saved": sum(len(split.folds) - 1 - t[PRUNED_AFTER_FOLD] for t in search.trials
                                        if t["state"] == "PRUNED"),
            "fold_seeds": [derive_seed(protocol.search.seed, "search", f) for f in range(len(split.folds))]}


def _finished_search(store: Storage, key: RunKey, protocol: Protocol, split: Split) -> dict:
    """The search record of a study other workers finished (for `harness record`)."""
    name, loss_name = key.study_name, key.loss
    if name not in optuna.get_all_study_names(store.optuna_storage):
        raise HarnessError(f"no study {name} in {store.shown}: nothing has been run for this loss yet")
    study = optuna.load_study(study_name=name, storage=store.optuna_storage)
    counted, target = len(counted_trials(study)), search_target(protocol, loss_name)
    if counted < target:
        raise HarnessError(f"the search of {loss_name} has {counted} of its {target} trials; start a worker "
                           "(harness worker, same options) to finish it")
    return _search_record(search_result(study), store, protocol, split)


def write_record_once(store: Storage, results_dir: Path, studies: list[str | None], run_id: str,
                      describe_run: Callable[[str], RunRecord]) -> tuple[RunRecord, bool]:
    """Write the record of finished work exactly once, whichever worker gets here first.

    The run id is claimed in the test study before the file is written, so a process that dies in
    between leaves the claim, and the next one writes the same record. Returns (record, written now).
    """
    test_name = studies[0]
    with store.lock(test_name):
        test_study = optuna.load_study(study_name=test_name, storage=store.optuna_storage)
        run_id = test_study.user_attrs.get(FINISHED) or run_id
        path = record_path(results_dir, run_id)
        if path.exists():
            return load_record(path), False
        for name in studies:
            if name:
                optuna.load_study(study_name=name, storage=store.optuna_storage).set_user_attr(FINISHED, run_id)
        run = describe_run(run_id)
        write_record(results_dir, run)
    return run, True
