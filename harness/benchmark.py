"""One benchmark run: validate inputs, search on trainval, test on the held-out half, record, publish.

Every input is checked before anything is written, so bad input leaves `results/` untouched.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import losses
from harness.data import check_dataset_name, load_dataset
from harness.evaluate import run_test
from harness.leaderboard import BASELINE, write_leaderboards
from harness.protocol import Protocol
from harness.records import environment, new_run_id, newest_complete_runs, save_record
from harness.search import run_search
from harness.seeding import derive_seed
from harness.splits import class_disjoint_split

__all__ = ["run_benchmark", "default_storage", "check_loss_name", "loss_identity", "completed_run"]


def default_storage(results_dir: Path) -> str:
    return f"sqlite:///{(Path(results_dir) / 'studies.db').resolve()}"


def check_loss_name(loss_name: str) -> None:
    if loss_name != BASELINE:
        losses.info(loss_name)  # raises HarnessError listing the known losses


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
    }


def completed_run(results_dir: Path, *, loss_name: str, dataset: str, protocol: Protocol) -> str | None:
    """The newest complete run of this loss (same source) on this dataset and protocol hash, if any.

    Lets a long series of benchmarks (`make zoo`) continue where it stopped instead of redoing runs.
    """
    key = (dataset, protocol.hash, loss_name, loss_identity(loss_name).get("source_sha256"))
    record = newest_complete_runs(results_dir).get(key)
    return record["run_id"] if record else None


def run_benchmark(*, loss_name: str, dataset: str, protocol: Protocol, results_dir: Path, reports_dir: Path,
                  storage: str | None = None, data_root: Path | None = None, progress: bool = True) -> dict:
    """Run the whole protocol for one loss (or the untrained baseline) and return its record."""
    check_loss_name(loss_name)
    check_dataset_name(dataset)
    # the loss's source hash, the commit and the versions as the run starts: the code that ran
    identity = loss_identity(loss_name)
    env = environment()
    started = time.time()
    started_at = datetime.now(UTC).isoformat()
    data = load_dataset(dataset, image_size=protocol.images.image_size, root=data_root)
    split = class_disjoint_split(data.num_classes, protocol.search.folds)
    trainval = data.subset(split.trainval)

    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    storage = storage or default_storage(results_dir)
    if loss_name == BASELINE:
        search_record = {"study": None, "storage": None, "trials_counted": 0, "best_params": {},
                         "best_value": None, "best_trial": None, "trials": []}
    else:
        search = run_search(trainval, split, protocol, loss_name, dataset=dataset, storage=storage,
                            progress=progress)
        search_record = {"study": search.study_name, "storage": storage,
                         "trials_counted": search.trials_counted,
                         "best_params": search.best_params, "best_value": search.best_value,
                         "best_trial": search.best_trial, "trials": search.trials,
                         "fold_seeds": [derive_seed(protocol.search.seed, "search", f)
                                        for f in range(len(split.folds))]}

    # the test half is materialised only now, after the search has finished
    test = data.subset(split.test)
    test_result = run_test(trainval, test, split, protocol, None if loss_name == BASELINE else loss_name,
                           search_record["best_params"], progress=progress)

    record = {
        "run_id": new_run_id(dataset, protocol.name, loss_name),
        "status": "complete",
        "started_at": started_at,
        "finished_at": datetime.now(UTC).isoformat(),
        "wall_seconds": round(time.time() - started, 2),
        "dataset": {"name": dataset, "version": data.version, "num_classes": data.num_classes,
                    "num_items": len(data), "trainval_classes": len(split.trainval),
                    "test_classes": len(split.test), "test_items": len(test)},
        "protocol": protocol.to_dict(),
        "protocol_hash": protocol.hash,
        "loss": identity,
        "split": split.as_dict(),
        "search": search_record,
        "test": test_result,
        "seed": protocol.search.seed,
        "environment": env,
    }
    save_record(results_dir, record)
    write_leaderboards(results_dir, reports_dir)
    return record
