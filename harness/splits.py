"""Class-disjoint splits, exactly the reality-check rule (MLRCSplitManager, with the odd-n fix).

Classes are positions 0..n-1 of the sorted labels. The first T = floor(n/2) are train/validation,
the rest are the test set. Validation windows are V = floor(n/8) classes: for fold p the train
window is the T - V positions starting at floor(p*T/4) (wrapping modulo T) and the validation
window is the V positions right after it. The original code took n - V - T train classes, which
overlaps train and validation by one class when n is odd; T - V keeps the folds class-disjoint
and equals the original for CUB200, Cars196 and SOP.

A query/gallery benchmark (In-Shop) fixes its own search classes, its train items: then T is their
number, the same windows run over them (V = floor(T/4)), and every other class is test.
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

    def evaluated(self, classes: int) -> Split:
        """The split with each validation window and the test half cut to their first `classes` classes
        (0: unchanged); training classes stay as they are (a protocol's budget.eval_classes)."""
        if not classes:
            return self
        folds = tuple(Fold(fold.train, tuple(sorted(fold.val)[:classes])) for fold in self.folds)
        return Split(self.trainval, tuple(sorted(self.test)[:classes]), folds)

    def as_dict(self, class_names: tuple[str, ...] | None = None) -> dict:
        """The JSON form `harness splits` prints; classes as sorted positions, and with
        `class_names` each position's class name or id, in position order."""
        out = {
            "test": list(self.test),
            "folds": [{"train": sorted(f.train), "val": sorted(f.val)} for f in self.folds],
        }
        if class_names is not None:
            out["classes"] = list(class_names)
        return out


def class_disjoint_split(num_classes: int, num_folds: int = 4, *, trainval_classes: int | None = None) -> Split:
    """Split class positions 0..num_classes-1 into trainval folds and a held-out test half (or,
    with `trainval_classes`, the first that many positions for search and the rest for test)."""
    if num_folds < 2:
        raise HarnessError(f"num_folds must be at least 2, got {num_folds}")
    min_classes = 2 * num_folds * 2
    if trainval_classes is None and num_classes < min_classes:
        raise HarnessError(
            f"a class-disjoint split with {num_folds} folds needs at least {min_classes} classes, "
            f"got {num_classes}"
        )
    if trainval_classes is not None and not (2 * num_folds <= trainval_classes < num_classes):
        raise HarnessError(f"a split with {num_folds} folds over {trainval_classes} search classes needs at least "
                           f"{2 * num_folds} of them and at least one test class (of {num_classes})")
    trainval_size = num_classes // 2 if trainval_classes is None else trainval_classes
    val_size = trainval_size // num_folds  # = floor(n/8) for 4 folds and T = floor(n/2), odd n included
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
