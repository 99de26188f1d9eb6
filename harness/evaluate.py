"""The test stage: the only code that reads the test half.

With the best hyperparameters, each reproduction trains one model per fold (new seeds, same fold
splits as the search), embeds the test classes, and scores them two ways, as the reality check
reported: "separated" (each fold model alone, the four scores averaged) and "concatenated" (the four
fold models' embeddings joined into one). Mean and a 95% Student-t interval over reproductions.
A query/gallery benchmark (In-Shop) scores its official queries against its official gallery.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from tqdm.auto import tqdm

from harness.data import ImageSet
from harness.metrics import retrieval_metrics, retrieval_metrics_query_reference
from harness.protocol import Protocol
from harness.seeding import derive_seed
from harness.splits import Split
from harness.train import build_model, embed, train_fold

__all__ = ["METRICS", "MODES", "run_test", "summarize"]

METRICS = ("precision_at_1", "r_precision", "map_at_r")
MODES = ("separated", "concatenated")


def _scores(embeddings: np.ndarray, test: ImageSet) -> dict[str, float]:
    labels = test.labels.numpy()
    if test.roles is None:
        result = retrieval_metrics(embeddings, labels)
    else:
        query, gallery = test.roles == "query", test.roles == "gallery"
        result = retrieval_metrics_query_reference(embeddings[query], labels[query],
                                                   embeddings[gallery], labels[gallery])
    return {m: result[m] for m in METRICS}


def run_test(trainval: ImageSet, test: ImageSet, split: Split, protocol: Protocol, loss_name: str | None,
             params: dict, *, progress: bool = True) -> dict:
    """Per-reproduction figures and their summary. `loss_name=None` scores untrained networks."""
    reproductions = []
    bar = tqdm(total=protocol.search.reproductions * len(split.folds), desc=f"test {loss_name or 'none'}",
               unit="fold", disable=not progress)
    for rep in range(protocol.search.reproductions):
        fold_embeddings, folds = [], []
        for f, fold in enumerate(split.folds):
            seed = derive_seed(protocol.search.seed, "test", rep, f)
            if loss_name is None:
                model, fold_info = build_model(protocol, test.channels, seed), {}
            else:
                result = train_fold(protocol=protocol, loss_name=loss_name, hparams=params,
                                    train_set=trainval.subset(fold.train), val_set=trainval.subset(fold.val),
                                    seed=seed)
                model = result.model
                fold_info = {"best_val_map_at_r": result.best_val_map_at_r,
                             "best_iteration": result.best_iteration,
                             "iterations_run": result.iterations_run}
            embeddings = embed(model, test, protocol)
            fold_embeddings.append(embeddings)
            folds.append({"fold": f, "seed": seed, **fold_info, "test": _scores(embeddings, test)})
            bar.update()
        separated = {m: float(np.mean([fold["test"][m] for fold in folds])) for m in METRICS}
        concatenated = _scores(np.concatenate(fold_embeddings, axis=1), test)
        reproductions.append({"reproduction": rep, "folds": folds, "separated": separated,
                              "concatenated": concatenated})
    bar.close()
    return {"reproductions": reproductions, "summary": summarize(reproductions)}


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
