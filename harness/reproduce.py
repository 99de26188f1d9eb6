"""`harness reproduce RUN_ID`: rerun a record exactly and say, figure by figure, whether each came back bit for bit.

The rerun takes everything from the record: its protocol (whose hash must come out the same), its
loss (whose code identity must be the one recorded), its dataset (whose version must match) and so
its seeds, and it runs into a temporary results folder, so the record and the tables it reproduces
are never touched. Figures are compared exactly (JSON floats round-trip exactly); a difference is
reported with the CPU kind of both runs, since another kind of CPU rounds differently.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from harness.records import RunRecord, load_record, record_path

__all__ = ["Reproduction", "reproduce", "figures"]


def _flat(value, path: str, into: dict[str, object]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flat(item, f"{path}.{key}" if path else str(key), into)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _flat(item, f"{path}[{i}]", into)
    else:
        into[path] = value


def figures(record: RunRecord) -> dict[str, object]:
    """Every figure a run produced, by its path in the record: the search (each trial's parameters, state,
    value and fold figures with their training histories, the best trial) and the test (every unit's
    figures and history, the separated and concatenated scores, the summary, the per-query file's hash).
    Who ran what and when (workers, times) are not figures."""
    trials = [{k: v for k, v in trial.items() if k != "worker"} for trial in record.search.get("trials", [])]
    search = {key: record.search.get(key) for key in ("best_params", "best_value", "best_trial", "trials_counted")}
    search["trials"] = trials
    test = {"reproductions": record.test["reproductions"], "summary": record.test["summary"],
            "per_query_sha256": (record.test.get("per_query") or {}).get("sha256")}
    found: dict[str, object] = {}
    _flat({"search": search, "test": test}, "", found)
    return found


def _missing(value: object) -> bool:
    """None or NaN: a record's JSON writes a NaN (a CI over one reproduction) as null."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _same(a: object, b: object) -> bool:
    return a == b or (_missing(a) and _missing(b))


def _machine(record: RunRecord) -> str:
    env = record.environment
    return f"{env.get('cpu') or 'unknown CPU'} ({env.get('cpu_capability') or '?'}, {env.get('device') or '?'})"


@dataclass
class Reproduction:
    """The outcome: every figure's path with the recorded and the reproduced value."""

    original: RunRecord
    rerun: RunRecord
    compared: dict[str, tuple[object, object]] = field(default_factory=dict)

    @property
    def differences(self) -> list[str]:
        return [path for path, (a, b) in self.compared.items() if not _same(a, b)]

    @property
    def identical(self) -> bool:
        return not self.differences

    def lines(self) -> list[str]:
        """The headline figures one by one (the test summary, the best trial), every other figure by its
        group (a trial, a reproduction) with how many of it are identical, one line per difference with
        both machines, then the verdict."""
        out = [f"reproducing {self.original.run_id} (loss {self.original.key.loss}, protocol "
               f"{self.original.key.protocol_name} {self.original.protocol_hash[:12]}, dataset "
               f"{self.original.key.dataset} {self.original.key.dataset_version})"]
        differing = set(self.differences)
        groups: dict[str, list[str]] = {}
        for path in self.compared:
            headline = path.startswith(("test.summary.", "search.best_", "test.per_query"))
            groups.setdefault(path if headline else ".".join(path.split(".")[:2]), []).append(path)
        for group, paths in groups.items():
            bad = [p for p in paths if p in differing]
            if len(paths) == 1 and paths[0] == group:
                out.append(f"  {'differs  ' if bad else 'identical'} {group} = {self.compared[group][0]!r}")
            else:
                out.append(f"  {'differs  ' if bad else 'identical'} {group}: {len(paths) - len(bad)} of "
                           f"{len(paths)} figures identical")
        for path in self.differences:
            a, b = self.compared[path]
            out.append(f"difference: {path}: recorded {a!r} on {_machine(self.original)}, reproduced {b!r} on "
                       f"{_machine(self.rerun)}")
        total, same = len(self.compared), len(self.compared) - len(differing)
        verdict = ("every figure reproduced bit for bit" if self.identical else
                   f"{len(differing)} figures differ" + ("" if _machine(self.original) != _machine(self.rerun) else
                                                         " on the same kind of CPU"))
        out.append(f"{same} of {total} figures identical: {verdict}")
        return out


def _checked_inputs(record: RunRecord, dataset: str | None, data_root: Path | None):
    """The protocol, dataset argument and loss the rerun needs, each checked against the record; refuses
    (HarnessError, with the reason) what no longer matches."""
    import losses
    from harness.baseline import is_baseline
    from harness.modality import floor_named, modality_of
    from harness.protocol import protocol_from_dict

    protocol = protocol_from_dict(record.protocol, source=f"the protocol of run {record.run_id}")
    if protocol.hash != record.protocol_hash:
        raise HarnessError(f"cannot reproduce {record.run_id}: its protocol hashes to {protocol.hash[:12]} here, "
                           f"{record.protocol_hash[:12]} in the record (a protocol field's meaning changed)")
    loss = record.key.loss
    if not is_baseline(loss):
        if record.key.loss_identity is None:
            raise HarnessError(f"cannot reproduce {record.run_id}: it was recorded before loss identities "
                               "(schema 1), so which code of the loss made it is unknown")
        floor = floor_named(loss)
        now = floor.identity() if floor is not None else losses.identity(loss)
        if now != record.key.loss_identity:
            raise HarnessError(f"cannot reproduce {record.run_id}: the code of loss {loss} has changed since "
                               f"(identity {record.key.loss_identity[:12]} in the record, {now[:12]} here); "
                               f"check out commit {record.environment.get('git_commit') or '?'} to rerun it")
    name = dataset or record.key.dataset
    version = modality_of(name).version(name, protocol, root=data_root)
    if version != record.key.dataset_version:
        raise HarnessError(f"cannot reproduce {record.run_id}: dataset {name} is version {version} here, "
                           f"{record.key.dataset_version} in the record")
    return protocol, name


def reproduce(results_dir: Path, run_id: str, *, dataset: str | None = None, data_root: Path | None = None,
              jobs: int = 1, progress: bool = True) -> Reproduction:
    """Rerun `run_id` (under `results_dir`) into a temporary folder and compare every figure."""
    from harness.benchmark import run_benchmark

    path = record_path(results_dir, run_id)
    if not path.exists():
        known = sorted(p.parent.name for p in (Path(results_dir) / "runs").glob("*/record.json"))
        raise HarnessError(f"no run {run_id} under {Path(results_dir) / 'runs'}"
                           + (f"; the newest there: {', '.join(known[-3:])}" if known else ""))
    original = load_record(path)
    protocol, name = _checked_inputs(original, dataset, data_root)
    scratch = Path(tempfile.mkdtemp(prefix=f"harness-reproduce-{run_id[:24]}-"))
    try:
        rerun, _ = run_benchmark(loss_name=original.key.loss, dataset=name, protocol=protocol,
                                 results_dir=scratch / "results", reports_dir=scratch / "reports",
                                 data_root=data_root, progress=progress, jobs=jobs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    before, after = figures(original), figures(rerun)
    compared = {p: (before.get(p), after.get(p)) for p in [*before, *(p for p in after if p not in before)]}
    return Reproduction(original, rerun, compared)
