"""The one factory of run records for tests: a RunRecord built as the benchmark builds it, with every
section a test does not care about filled in plausibly, written by the real writer (write_record).

A record of a registered loss carries that loss's identity as the code stands, so its row is current;
made-up loss names get `id-<name>`, which `made_up_losses_are_current` makes the identity "now".
"""

from __future__ import annotations

from pathlib import Path

import losses
from harness.baseline import baseline_loss, baseline_search, is_baseline
from harness.evaluate import summarize
from harness.protocol import Protocol, load_protocol
from harness.records import RunRecord, write_record

__all__ = ["make_record", "save", "made_up_identity"]


def made_up_identity(loss: str) -> str:
    return f"id-{loss}"


def _identity(loss: str) -> str | None:
    if is_baseline(loss):
        return None
    try:
        return losses.identity(loss)
    except losses.LossError:
        return made_up_identity(loss)


def make_record(run_id: str = "r1", loss: str = "batch_hard", value: float = 0.3, *, dataset: str = "glyphs",
                dataset_version: str = "glyphs-v1-test", official: bool = True, protocol: Protocol | None = None,
                protocol_hash: str | None = None, identity: str | None | bool = True,
                finished_at: str = "2026-01-01T00:00:00", status: str = "complete",
                reproductions: list[dict] | None = None, search: dict | None = None, test_extra: dict | None = None,
                environment: dict | None = None) -> RunRecord:
    """A record whose every figure is `value` (or whose test reproductions are `reproductions`).
    `identity=True` takes the loss's identity now; a string or None sets it."""
    protocol = protocol or load_protocol("quick")
    reps = reproductions or [{"reproduction": r, **{m: {"precision_at_1": value, "r_precision": value,
                                                        "map_at_r": value} for m in ("separated", "concatenated")}}
                             for r in range(2)]
    loss_section = baseline_loss() if is_baseline(loss) else {
        "name": loss, "class": "losses.made:Up", "description": "made up for a test", "paper": "none",
        "identity": _identity(loss) if identity is True else identity, "search_space": {},
        "search_distributions": {}}
    return RunRecord(
        run_id=run_id, status=status, started_at=finished_at, finished_at=finished_at, wall_seconds=1.0,
        dataset={"name": dataset, "version": dataset_version, "official": official},
        protocol=protocol.to_dict(), protocol_hash=protocol_hash or protocol.hash, loss=loss_section,
        split={}, search=search if search is not None else (baseline_search() if is_baseline(loss) else {
            "trials_counted": 4, "best_params": {"margin": 0.1}, "best_value": value, "trials": []}),
        test={"reproductions": reps, "summary": summarize(reps), **(test_extra or {})},
        seed=protocol.search.seed, environment=environment or {"git_commit": "abc"})


def save(results: Path, record: RunRecord) -> RunRecord:
    """Write `record` under `results` with the real writer; returns it."""
    write_record(results, record)
    return record
