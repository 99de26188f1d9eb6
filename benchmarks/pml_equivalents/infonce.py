"""PML counterparts of the InfoNCE-family losses and FastAP (losses/infonce.py), configured alike.

PML's default distances normalise the embeddings, as ours do, so defaults match except where noted.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import reducers

__all__ = ["EQUIVALENTS"]


def ntxent(ours: torch.nn.Module) -> torch.nn.Module:
    # equal except where PML's log(ratio + tiny) caps an underflowing pair (temperature < ~0.023)
    return pml_losses.NTXentLoss(temperature=ours.temperature)


def supcon(ours: torch.nn.Module) -> torch.nn.Module:
    # MeanReducer, not PML's default AvgNonZeroReducer: we average over anchors, solved ones (L_a = 0)
    # included; identical whenever every anchor has a positive (the harness's P x K batches)
    return pml_losses.SupConLoss(temperature=ours.temperature, reducer=reducers.MeanReducer())


def n_pairs(ours: torch.nn.Module) -> torch.nn.Module:
    # PML's pair per class (first anchor-positive pair in row-major order) is the one we pick
    return pml_losses.NPairsLoss()


def fastap(ours: torch.nn.Module) -> torch.nn.Module:
    return pml_losses.FastAPLoss(num_bins=ours.num_bins)


EQUIVALENTS: dict[str, Callable[[torch.nn.Module], torch.nn.Module]] = {
    "ntxent": ntxent,
    "supcon": supcon,
    "n_pairs": n_pairs,
    "fastap": fastap,
}
