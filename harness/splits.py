"""Class-disjoint splits, exactly the reality-check rule (MLRCSplitManager, with the odd-n fix).

Classes are positions 0..n-1 of the sorted labels. The first T = floor(n/2) are train/validation,
the rest are the test set. Validation windows are V = floor(n/8) classes: for fold p the train
window is the T - V positions starting at floor(p*T/4) (wrapping modulo T) and the validation
window is the V positions right after it. The original code took n - V - T train classes, which
overlaps train and validation by one class when n is odd; T - V keeps the folds class-disjoint
and equals the original for CUB200, Cars196 and SOP.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import HarnessError

__all__ = ["Fold", "Split", "class_disjoint_split"]


@dataclass(frozen=True)
class Fold:
    train: tuple[int, ...]
    val: tuple[int, ...]


@dataclass(frozen=True)
class Split:
    trainval: tuple[int, ...]
    test: tuple[int, ...]
    folds: tuple[Fold, ...]

    def as_dict(self) -> dict:
        """The JSON form `harness splits` prints; classes as sorted positions."""
        return {
            "test": list(self.test),
            "folds": [{"train": sorted(f.train), "val": sorted(f.val)} for f in self.folds],
        }


def class_disjoint_split(num_classes: int, num_folds: int = 4) -> Split:
    """Split class positions 0..num_classes-1 into trainval folds and a held-out test half."""
    if num_folds < 2:
        raise HarnessError(f"num_folds must be at least 2, got {num_folds}")
    min_classes = 2 * num_folds * 2
    if num_classes < min_classes:
        raise HarnessError(
            f"a class-disjoint split with {num_folds} folds needs at least {min_classes} classes, "
            f"got {num_classes}"
        )
    trainval_size = num_classes // 2
    val_size = num_classes // (2 * num_folds)
    train_size = trainval_size - val_size
    folds = []
    for p in range(num_folds):
        start = p * trainval_size // num_folds
        train = tuple((start + i) % trainval_size for i in range(train_size))
        val = tuple((start + train_size + i) % trainval_size for i in range(val_size))
        folds.append(Fold(train=train, val=val))
    return Split(
        trainval=tuple(range(trainval_size)),
        test=tuple(range(trainval_size, num_classes)),
        folds=tuple(folds),
    )
