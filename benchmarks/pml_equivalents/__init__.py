"""pytorch-metric-learning's counterpart of each of our losses, configured alike (test-only oracle).

Each family module exports `EQUIVALENTS: dict[str, Callable[[torch.nn.Module], torch.nn.Module]]`:
given one of our built loss modules, return PML's loss computing the same value (same distance, same
reduction, same learnable parameter values). Used by the equality tests and by benchmarks/losses.py.
"""

from __future__ import annotations

import importlib

FAMILIES = ("triplet", "pair", "infonce", "proxy", "softmax")


def equivalents() -> dict:
    found = {}
    for family in FAMILIES:
        try:
            module = importlib.import_module(f"benchmarks.pml_equivalents.{family}")
        except ModuleNotFoundError:
            continue
        found.update(module.EQUIVALENTS)
    return found
