"""One benchmark run: validate inputs, search on trainval, test on the held-out half, record, publish.

Every input is checked before anything is written under `results/`: the names, the dataset's files
(listed, present, decoded into the image cache), the split against the batch, and the network itself
(built once, weights loaded and checked, one batch through it), so bad input leaves `results/` untouched.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import optuna
import torch

import losses
from harness.backbones import check_backbone_name, weight_metadata
from harness.data import EMBEDDED, ImageSet, check_dataset_name, dataset_label, load_dataset
from harness.errors import HarnessError
from harness.evaluate import collect_test, queue_units, run_test_units, unit_progress, units_dir, units_study_name
from harness.jobs import THREADS_PER_TRAINING, Jobs
from harness.leaderboard import BASELINE, write_leaderboards
from harness.per_query import pack, write_per_query
from harness.protocol import Protocol
from harness.records import environment, new_run_id, newest_complete_runs, save_record
from harness.search import (
    PRUNED_AFTER_FOLD,
    SearchResult,
    counted_trials,
    run_search,
    search_result,
    search_target,
    study_name,
)
from harness.seeding import derive_seed
from harness.splits import Split, class_disjoint_split
from harness.studies.storage import Storage, open_storage
from harness.studies.study import FINISHED, StudyIdentity, join_study
from harness.train import build_model
from harness.transforms import eval_batch

__all__ = ["run_benchmark", "default_storage", "check_loss_name", "check_inputs", "loss_identity", "completed_run"]


def default_storage(results_dir: Path) -> str:
    return f"sqlite:///{(Path(results_dir) / 'studies.db').resolve()}"


def check_loss_name(loss_name: str) -> None:
    if loss_name != BASELINE:
        losses.info(loss_name)  # raises LossError listing the known losses


def check_inputs(loss_name: str, dataset: str, protocol: Protocol) -> None:
    """The checks that need no data: names, and that the protocol's pipeline fits the dataset."""
    check_loss_name(loss_name)
    check_dataset_name(dataset)
    check_backbone_name(protocol.model.backbone)
    wanted = "affine" if dataset == EMBEDDED else "resized_crop"
    if protocol.images.transform != wanted:
        raise HarnessError(f"protocol {protocol.name} uses images.transform = \"{protocol.images.transform}\", "
                           f"but dataset {dataset} needs \"{wanted}\" "
                           f"({'rendered in memory' if dataset == EMBEDDED else 'image files'}); "
                           f"try --protocol {'quick' if dataset == EMBEDDED else 'smoke or reality_check'}")
    _check_input_normalisation(protocol)


def _check_input_normalisation(protocol: Protocol) -> None:
    """Pretrained weights expect one input (the weights' own metadata says which): the protocol must give it."""
    expected = weight_metadata(protocol.model.backbone, protocol.model.pretrained)
    if expected is None:
        return
    images = protocol.images
    given = {"channel_order": images.channel_order, "pixel_range": images.pixel_range,
             "mean": list(images.per_channel("mean", 3)), "std": list(images.per_channel("std", 3))}
    for key, value in given.items():
        want = expected[key]
        same = (value == want if isinstance(value, str) else
                bool(np.allclose(np.atleast_1d(value), np.atleast_1d(want), rtol=1e-3, atol=1e-6)))
        if not same:
            raise HarnessError(f"protocol {protocol.name}: the pretrained {protocol.model.backbone} weights expect "
                               f"images.{key} = {want}, the protocol gives {value}")


def _check_data_fits(data: ImageSet, split: Split, protocol: Protocol) -> None:
    """Every fold can fill a batch, and the network takes the images: one batch through it."""
    per_batch = protocol.batch.batch_size // protocol.batch.m_per_class
    fewest = min(len(fold.train) for fold in split.folds)
    if fewest < per_batch:
        raise HarnessError(f"dataset {data.name}: a fold trains on only {fewest} classes, but a batch of the protocol "
                           f"needs {per_batch} ({protocol.batch.batch_size} = {per_batch} x "
                           f"{protocol.batch.m_per_class})")
    model = build_model(protocol, in_chans=data.channels, seed=0)  # loads and checks any weights
    with torch.no_grad():
        model.eval()(eval_batch(data, np.arange(min(2, len(data))), protocol.images))


def loss_identity(loss_name: str) -> dict:
    """Name, paper and a hash of the loss's source file, so a changed loss is visible in the record."""
    if loss_name == BASELINE:
        return {"name": BASELINE, "description": "the network as initialised, no training"}
    info = losses.info(loss_name)
    return {
        "name": loss_name,
        "class": f"{info.cls.__module__}:{info.cls.__qualname__}",
        "description": info.description,
        "paper": info.paper,
        "source_sha256": losses.source_sha256(loss_name),
        "search_space": {k: losses.describe(v) for k, v in info.space.items()},
        # Optuna's own form, so a report can rebuild the study (importances) from the record alone
        "search_distributions": {k: json.loads(optuna.distributions.distribution_to_json(v))
                                 for k, v in info.space.items()},
    }


def completed_run(results_dir: Path, *, loss_name: str, dataset: str, protocol: Protocol,
                  dataset_version: str | None = None) -> str | None:
    """The newest complete run of this loss (same source) on this dataset (this version, when given)
    and protocol hash, if any.

    Lets a long series of benchmarks (`make zoo`) continue where it stopped instead of redoing runs.
    """
    key = (dataset, protocol.hash, loss_name, loss_identity(loss_name).get("source_sha256"))
    runs = [record for run_key, record in newest_complete_runs(results_dir).items()
            if run_key[:4] == key and dataset_version in (None, run_key[4])]
    return max(runs, key=lambda r: r["finished_at"])["run_id"] if runs else None


def run_benchmark(*, loss_name: str, dataset: str, protocol: Protocol, results_dir: Path, reports_dir: Path,
                  storage: str | None = None, data_root: Path | None = None, progress: bool = True,
                  take_work: bool = True, heartbeat_seconds: int = 60, poll_seconds: float | None = None,
                  jobs: int = 1) -> dict:
    """Run the whole protocol for one loss (or the untrained baseline) and return its record.

    This process is one worker of the study: any other process running the same command (`harness
    worker`) shares the search trials and the test units with it. The record is written once, by the
    process that finds every unit done; with `take_work=False` (`harness record`) nothing is trained.
    `jobs` trainings run side by side (a trial's folds, the test units), each on fixed threads, so the
    figures are the same for any number.
    """
    check_inputs(loss_name, dataset, protocol)
    # the loss's source hash, the commit and the versions as the run starts: the code that ran
    identity = loss_identity(loss_name)
    env = environment()
    data = load_dataset(dataset, image_size=protocol.images.image_size, resize=protocol.images.resize,
                        root=data_root, progress=progress)
    split = class_disjoint_split(data.num_classes, protocol.search.folds, trainval_classes=data.trainval_classes)
    trainval = data.subset(split.trainval)
    _check_data_fits(trainval, split, protocol)
    dataset = dataset_label(dataset)
    results_dir = Path(results_dir)
    store = open_storage(storage or default_storage(results_dir), heartbeat_seconds=heartbeat_seconds)
    baseline = loss_name == BASELINE
    name = None if baseline else study_name(dataset, protocol, loss_name)
    with store.sole_worker(name or units_study_name(dataset, protocol, None, None)), Jobs(jobs) as pool:
        if baseline:
            search_record, search_study = {"study": None, "storage": None, "trials_counted": 0, "best_params": {},
                                           "best_value": None, "best_trial": None, "trials": []}, None
        elif take_work:
            search = run_search(trainval, split, protocol, loss_name, dataset=dataset, storage=store,
                                dataset_version=data.version, progress=progress, poll_seconds=poll_seconds,
                                jobs=pool)
            search_record, search_study = _search_record(search, store, protocol, split), search.study_name
        else:
            search_record, search_study = _finished_search(store, name, protocol, loss_name, split), name
        study_identity = StudyIdentity(dataset, data.version, protocol, loss_name, identity.get("source_sha256"))
        test_name = units_study_name(dataset, protocol, loss_name, search_study)
        test_study = join_study(store, test_name, study_identity, stage="test")
        queue_units(store, test_study, protocol, split, search_record["best_params"])
        directory = units_dir(results_dir, test_name)
        # the test half is materialised only now, after the search has finished
        test = data.subset(split.test)
        if take_work:
            run_test_units(trainval, test, split, protocol, None if baseline else loss_name,
                           search_record["best_params"], storage=store, study=test_study, directory=directory,
                           progress=progress, poll_seconds=poll_seconds, jobs=pool)
        done, total = unit_progress(test_study)
        if done < total:
            raise HarnessError(f"{done} of {total} test units of {loss_name} are done; start a worker "
                               "(harness worker, same options) to finish them")

        def describe_run(run_id: str) -> dict:
            per_query: dict = {}
            test_figures = collect_test(test_study, test, protocol, split, directory, per_query)
            # beside the record, and written before it: a record never names a file that is not there
            relevant = per_query.pop("relevant")
            test_figures["per_query"] = write_per_query(Path(results_dir) / "runs" / run_id, pack(relevant, per_query))
            started_at = _started_at(store, [search_study, test_name])
            finished = datetime.now(UTC)
            return {
                "run_id": run_id,
                "status": "complete",
                "started_at": started_at,
                "finished_at": finished.isoformat(),
                "wall_seconds": round((finished - datetime.fromisoformat(started_at)).total_seconds(), 2),
                "dataset": {"name": dataset, "version": data.version, "official": data.official,
                            "num_classes": data.num_classes, "num_items": len(data),
                            "trainval_classes": len(split.trainval), "test_classes": len(split.test),
                            "test_items": len(test), **data.details},
                "protocol": protocol.to_dict(),
                "protocol_hash": protocol.hash,
                "loss": identity,
                "split": split.as_dict(),
                "search": search_record,
                "test": test_figures,
                "seed": protocol.search.seed,
                "environment": {**env, "jobs": jobs, "threads_per_training": THREADS_PER_TRAINING},
            }

        record, written = write_record_once(store, results_dir, [test_name, search_study],
                                            new_run_id(dataset, protocol.name, loss_name), describe_run)
    if written:
        write_leaderboards(results_dir, reports_dir, redraw=False)  # only the new run's plot is drawn
    return record


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


def _finished_search(store: Storage, name: str, protocol: Protocol, loss_name: str, split: Split) -> dict:
    """The search record of a study other workers finished (for `harness record`)."""
    if name not in optuna.get_all_study_names(store.optuna_storage):
        raise HarnessError(f"no study {name} in {store.shown}: nothing has been run for this loss yet")
    study = optuna.load_study(study_name=name, storage=store.optuna_storage)
    counted, target = len(counted_trials(study)), search_target(protocol, loss_name)
    if counted < target:
        raise HarnessError(f"the search of {loss_name} has {counted} of its {target} trials; start a worker "
                           "(harness worker, same options) to finish it")
    return _search_record(search_result(study), store, protocol, split)


def write_record_once(store: Storage, results_dir: Path, studies: list[str | None], run_id: str,
                      describe_run) -> tuple[dict, bool]:
    """Write the record of finished work exactly once, whichever worker gets here first.

    The run id is claimed in the test study before the file is written, so a process that dies in
    between leaves the claim, and the next one writes the same record. Returns (record, written now).
    """
    test_name = studies[0]
    with store.lock(test_name):
        test_study = optuna.load_study(study_name=test_name, storage=store.optuna_storage)
        run_id = test_study.user_attrs.get(FINISHED) or run_id
        path = Path(results_dir) / "runs" / run_id / "record.json"
        if path.exists():
            return json.loads(path.read_text(encoding="utf-8")), False
        for name in studies:
            if name:
                optuna.load_study(study_name=name, storage=store.optuna_storage).set_user_attr(FINISHED, run_id)
        record = describe_run(run_id)
        save_record(results_dir, record)
    return record, True
