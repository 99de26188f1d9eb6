"""A loss's search study rebuilt from its run record, and Optuna's hyperparameter importances of it.

The report is regenerated from the records alone (the study databases are not kept in git), so
the study is rebuilt in memory from the record's trials and the search space the record keeps in
Optuna's own JSON form. Importances use Optuna's fANOVA evaluator with a fixed seed, so the same
record always gives the same figures.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

import optuna

if TYPE_CHECKING:
    from harness.records import RunRecord

__all__ = ["completed_trials", "param_importances"]


def completed_trials(record: RunRecord) -> list[dict]:
    """The record's search trials that completed with a value, in trial order."""
    trials = record.search.get("trials") or []
    return sorted((t for t in trials if t.get("state") == "COMPLETE" and t.get("value") is not None),
                  key=lambda t: t["number"])


def param_importances(record: RunRecord) -> dict[str, float] | None:
    """Hyperparameter -> fANOVA importance (they sum to 1), most important first; None where the record
    cannot tell: no search space kept (recorded before it was), no hyperparameters, or fewer than two
    completed trials with different values (nothing to explain otherwise)."""
    spaces = record.loss.get("search_distributions")
    trials = completed_trials(record)
    if not spaces or len({t["value"] for t in trials}) < 2:
        return None
    distributions = {name: optuna.distributions.json_to_distribution(json.dumps(space))
                     for name, space in spaces.items()}
    frozen = [optuna.trial.create_trial(
        params={k: v for k, v in t["params"].items() if k in distributions},
        distributions={k: distributions[k] for k in t["params"] if k in distributions},
        value=t["value"]) for t in trials]
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "a new study created" line per plot
    try:
        study = optuna.create_study(direction="maximize")
        study.add_trials(frozen)
        importances = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    finally:
        optuna.logging.set_verbosity(verbosity)
    if not importances or any(math.isnan(v) for v in importances.values()):
        return None
    return {name: float(value) for name, value in importances.items()}
