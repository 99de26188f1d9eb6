"""Loading a state dict into a trunk: an exact fit up to the removed classifier's keys, or one clear line.

Its own module, below the backbones themselves, so a backbone module can load weights without
importing the package that imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from harness.errors import HarnessError

__all__ = ["fit_state_dict", "load_weights", "one_line"]


def one_line(error: BaseException) -> str:
    """The first non-empty line of an error, so the CLI's one-line report stays one line."""
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()
    return type(error).__name__


def _shape(tensor: torch.Tensor) -> list[int]:
    return list(tensor.shape)


def fit_state_dict(module: nn.Module, state: object, *, source: str, backbone: str,
                   classifier_prefixes: tuple[str, ...]) -> None:
    """Load `state` into `module` only if it fits exactly, up to the removed classifier's keys.

    The first problem is named in a stable order (missing keys in the model's order, then unexpected keys
    in the file's order, then shape mismatches in the model's order), with the counts of all three.
    `num_batches_tracked` may be absent: files saved before PyTorch 0.4.1 (such as the ImageNet
    BN-Inception) have none, and it only counts steps.
    """
    if not isinstance(state, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                 for k, v in state.items()):
        raise HarnessError(f"{source} is not a state dict (a mapping of parameter names to tensors)")
    expected = module.state_dict()
    prefixes = classifier_prefixes

    def removed_classifier(key: str) -> bool:
        return any(key == p or key.startswith(p + ".") for p in prefixes)

    missing = [k for k in expected if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in expected and not removed_classifier(k)]
    mismatched = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    counts = (f"({len(missing)} keys missing, {len(unexpected)} unexpected, "
              f"{len(mismatched)} shape mismatches)")
    prefix = f"{source} do not fit backbone {backbone}:"
    if missing:
        raise HarnessError(f"{prefix} key '{missing[0]}' is missing from the file {counts}")
    if unexpected:
        raise HarnessError(f"{prefix} key '{unexpected[0]}' in the file is not in the model {counts}")
    if mismatched:
        key = mismatched[0]
        raise HarnessError(f"{prefix} '{key}' has shape {_shape(state[key])} in the file but "
                           f"{_shape(expected[key])} in the model {counts}")
    fitted = {k: state.get(k, expected[k]) for k in expected}  # a missing step counter keeps the model's
    module.load_state_dict(fitted, strict=True)


def load_weights(module: nn.Module, path: str | Path, *, backbone: str, classifier_prefixes: tuple[str, ...]) -> None:
    """Load a local state dict file into `module` (see `fit_state_dict` for what must match)."""
    path = Path(path).expanduser()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # missing file, not a torch file, pickled objects: all "does not load"
        raise HarnessError(f"weights file {path} does not load: {type(error).__name__}: "
                           f"{one_line(error)}") from error
    fit_state_dict(module, state, source=f"weights {path}", backbone=backbone, classifier_prefixes=classifier_prefixes)
