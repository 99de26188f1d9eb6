"""Run records: one JSON file per run that says exactly how every figure was made.

Records are written atomically (harness.atomic), so an interrupted run never leaves half a record.
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from harness.atomic import write_atomic
from harness.errors import HarnessError
from harness.studies.storage import redact

__all__ = ["write_json_atomic", "environment", "new_run_id", "save_record",
           "load_records", "newest_complete_runs", "REPO_ROOT"]

REPO_ROOT = Path(__file__).resolve().parents[1]  # the source checkout, when the harness runs from one
PACKAGES = ("dml-harness", "torch", "torchvision", "timm", "optuna", "faiss-cpu", "numpy", "scipy",
            "pandas", "scikit-learn")


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


def save_record(results_dir: Path, record: dict) -> Path:
    path = Path(results_dir) / "runs" / record["run_id"] / "record.json"
    write_json_atomic(path, record)
    return path


def load_records(results_dir: Path) -> list[dict]:
    """Every run record under results/runs, oldest first; a corrupt record is named, not skipped."""
    records = []
    for path in sorted((Path(results_dir) / "runs").glob("*/record.json")):
        try:
            records.append(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise HarnessError(f"corrupt run record {path}: {error}") from error
    return records


def newest_complete_runs(results_dir: Path) -> dict[tuple[str, str, str, str | None, str], dict]:
    """(dataset, protocol hash, loss, loss source sha256, dataset version) -> its newest complete record.

    The one rule for which run stands for a loss: the leaderboard shows it, and `--if-missing`
    skips a loss that has one. A changed loss file is a different key, never a replacement.
    """
    newest: dict[tuple[str, str, str, str | None], dict] = {}
    for record in load_records(results_dir):  # oldest first: on equal finish times the later run wins
        if record.get("status") != "complete":
            continue
        key = (record["dataset"]["name"], record["protocol_hash"], record["loss"]["name"],
               record["loss"].get("source_sha256"), record["dataset"]["version"])
        if key not in newest or record["finished_at"] >= newest[key]["finished_at"]:
            newest[key] = record
    return newest
