"""A study's identity and its sampler: created once with what it was made under; a worker that differs
is refused with the difference named, so one study never mixes protocols, data or loss code.

A study is named by its run key (harness.run_key): dataset, protocol (name and hash) and loss (name and
code identity), so a changed protocol or loss starts a study of its own. While a study of the same
dataset, protocol name and loss is unfinished, a worker that would start a different one is refused
instead: a node with a stale checkout must not quietly split a cluster's work in two.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import optuna

from harness.errors import HarnessError
from harness.protocol import Protocol
from harness.run_key import RunKey
from harness.seeding import derive_seed
from harness.studies.storage import Storage

__all__ = ["StudyIdentity", "join_study", "tpe_sampler", "FINISHED", "WORKERS_JOINED"]

FINISHED = "finished_run_id"  # user attribute: the record this study's work ended in
WORKERS_JOINED = "workers_joined"


@dataclass(frozen=True)
class StudyIdentity:
    """What every worker of one study must share: the run key, and the protocol it hashes (so a
    difference can be named setting by setting)."""

    key: RunKey
    protocol: Protocol

    def attrs(self) -> dict:
        return {"dataset": self.key.dataset, "dataset_version": self.key.dataset_version,
                "protocol_name": self.protocol.name, "protocol_hash": self.protocol.hash,
                "protocol": json.dumps(self.protocol.canonical_dict(), sort_keys=True, separators=(",", ":")),
                "loss": self.key.loss, "loss_identity": self.key.loss_identity}


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flatten(item, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): value}


def _difference(theirs: dict, ours: dict) -> str | None:
    """The first differences between a study's attributes and this worker's, in words; None if equal."""
    if theirs.get("dataset_version") != ours["dataset_version"]:
        return f"dataset version {theirs.get('dataset_version')} there, {ours['dataset_version']} here"
    if theirs.get("loss_identity") != ours["loss_identity"]:
        return (f"loss identity {str(theirs.get('loss_identity'))[:12]} there, "
                f"{str(ours['loss_identity'])[:12]} here")
    if theirs.get("protocol_hash") != ours["protocol_hash"]:
        a, b = _flatten(json.loads(theirs.get("protocol", "{}"))), _flatten(json.loads(ours["protocol"]))
        changed = [f"{key} = {json.dumps(a.get(key))} there, {json.dumps(b.get(key))} here"
                   for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]
        if not changed:
            return f"protocol hash {theirs.get('protocol_hash', '')[:12]} there, {ours['protocol_hash'][:12]} here"
        return "protocol " + "; ".join(changed[:3]) + ("; ..." if len(changed) > 3 else "")
    return None


def _refuse(storage: Storage, name: str, difference: str, *, sibling: bool) -> HarnessError:
    what = (f"study {name} of the same dataset, protocol and loss is unfinished in {storage.shown}" if sibling
            else f"study {name} in {storage.shown} was made")
    return HarnessError(f"refusing to join: {what} with {difference}; every worker must run the protocol, dataset "
                        f"version and loss source of the study it joins (finish that study, or remove it: "
                        f"optuna delete-study --study-name {name} --storage URL)")


def join_study(storage: Storage, name: str, identity: StudyIdentity, *, stage: str) -> optuna.Study:
    """Load the study `name`, or create it with its identity; refuse a worker that differs from it."""
    ours = {**identity.attrs(), "stage": stage}
    with storage.lock(name):
        summaries = optuna.get_all_study_summaries(storage.optuna_storage, include_best_trial=False)
        existing = {s.study_name: s for s in summaries}
        if name in existing:
            theirs = existing[name].user_attrs
            study = optuna.load_study(study_name=name, storage=storage.optuna_storage)
            if "protocol_hash" in theirs:
                difference = _difference(theirs, ours)
                if difference:
                    raise _refuse(storage, name, difference, sibling=False)
                return study
        else:
            for other in summaries:
                attrs = other.user_attrs
                if (attrs.get("stage") == stage and attrs.get("dataset") == identity.key.dataset
                        and attrs.get("protocol_name") == identity.protocol.name
                        and attrs.get("loss") == identity.key.loss and FINISHED not in attrs):
                    difference = _difference(attrs, ours)
                    if difference:
                        raise _refuse(storage, other.study_name, difference, sibling=True)
            study = optuna.create_study(study_name=name, storage=storage.optuna_storage, direction="maximize")
        # a new study, or one an earlier harness made without its identity: record it once
        for key, value in {**ours, "created_at": datetime.now(UTC).isoformat()}.items():
            study.set_user_attr(key, value)
        return study


def claim_worker_index(storage: Storage, study: optuna.Study) -> int:
    """0 for the first worker to join a study, then 1, 2, ...: what seeds each worker's sampler apart."""
    if not storage.several_workers:
        return 0
    with storage.lock(study.study_name):
        index = int(study.user_attrs.get(WORKERS_JOINED, 0))
        study.set_user_attr(WORKERS_JOINED, index + 1)
    return index


def tpe_sampler(protocol: Protocol, *, target: int, trials_so_far: int, worker_index: int,
                several_workers: bool) -> optuna.samplers.TPESampler:
    """TPE with every setting stated, not taken from the installed Optuna's defaults.

    The first worker's seed is the protocol seed and the trials before it (so a single worker is
    deterministic and a resumed study does not repeat its start-up points); every further worker mixes
    in its index, so concurrent workers never propose the same random start-up points. With several
    workers the constant liar makes TPE count running trials as bad, spreading the proposals.
    """
    path = ("tpe", trials_so_far) if worker_index == 0 else ("tpe", trials_so_far, "worker", worker_index)
    return optuna.samplers.TPESampler(seed=derive_seed(protocol.search.seed, *path),
                                      n_startup_trials=min(10, max(1, target // 2)), n_ei_candidates=24,
                                      multivariate=True, constant_liar=several_workers)
