"""Named, derived seeds: every random stream of a run is a pure function of the protocol seed."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def derive_seed(base: int, *names: object) -> int:
    """A 31-bit seed from the protocol seed and a path of names, e.g. ("test", rep, fold)."""
    text = "/".join(str(part) for part in (base, *names))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


def seed_everything(seed: int) -> None:
    """Seed the global generators that library code (timm's init, torch ops) may draw from."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
