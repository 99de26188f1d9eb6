"""What the engine asks of an input kind (images, text): one small interface, one room per kind.

Search, evaluation, the training loop, metrics, losses, records, tables and reports never ask which
kind they serve: they call the methods below on the modality a dataset belongs to (`room_of(items)`).
The rooms are `harness.image` and `harness.text`; a dataset's kind is read off its name (or, for a
researcher's file, its suffix and columns), and the protocol must be of the same kind.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from typing import Protocol as Interface

from harness.dataset_names import check_dataset_name
from harness.errors import HarnessError

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from harness.protocol import Protocol
    from harness.splits import Split

__all__ = ["Items", "Floor", "Modality", "rooms", "modality_named", "modality_of", "room_of", "check_kind",
           "floor_named"]

class Items(Interface):
    """A dataset's items as the engine sees them: class positions 0..n-1 in class order, and nothing
    else it may read; `subset` keeps only some classes (the search stage gets the trainval subset)."""

    name: str
    version: str
    labels: torch.Tensor
    class_names: tuple[str, ...]
    roles: np.ndarray | None
    trainval_classes: int | None
    official: bool
    details: dict

    @property
    def num_classes(self) -> int: ...

    kind: str  # the modality that made it (harness.modality.room_of)

    def __len__(self) -> int: ...

    def subset(self, classes: Sequence[int]) -> Items: ...


class Floor(Interface):
    """A reference row without a network (text: TF-IDF): fitted on the search half, it embeds the test half.
    No hyperparameters and no seed, so it runs once; its identity is its code's (a changed floor is stale)."""

    name: str
    description: str

    def identity(self) -> str: ...

    def embed(self, search_half: Items, test: Items) -> np.ndarray:
        """The test half's embeddings [items, dimensions] (float32), fitted on `search_half` alone."""


class Modality(Interface):
    """One input kind. `name` is what a protocol's `[input] kind` says; `default_protocol` what a dataset
    of this kind runs when no protocol is named; `floors` its reference rows without a network, by name."""

    name: str
    default_protocol: str
    floors: dict[str, Floor]

    def owns(self, dataset: str) -> bool:
        """Whether a dataset name or path is of this kind (without reading more than a header)."""

    def check_inputs(self, dataset: str, protocol: Protocol) -> None:
        """The checks that need no data: that the protocol's settings suit this dataset."""

    def load(self, dataset: str, protocol: Protocol, *, root: Path | None, progress: bool) -> Items:
        """The items, ready to train on (decoded or encoded into the kind's cache where it has one)."""

    def describe(self, root: Path | None) -> list[dict]:
        """Each dataset of this kind the harness knows by name: present or not, where, counts, version
        (`harness datasets`: name, present, where, classes, items, version; how_to_get when missing)."""

    def classes(self, dataset: str, *, root: Path | None) -> tuple[tuple[str, ...], int | None]:
        """(class names in position order, the trainval classes the dataset fixes or None), nothing decoded."""

    def version(self, dataset: str, protocol: Protocol, *, root: Path | None) -> str:
        """The dataset's content version, as cheaply as the kind allows."""

    def build_network(self, protocol: Protocol, items: Items) -> nn.Module:
        """The network as initialised (the caller seeds it): a `trunk` and an `embedder`, each an nn.Module
        whose parameters get the protocol's trunk and embedder learning rates."""

    def training_batch(self, items: Items, index: np.ndarray, protocol: Protocol, rng: torch.Generator,
                       device: torch.device | None) -> Any:
        """The network's input for the items at `index` (positions in `items`), augmented where the kind
        augments; `device` None is the reference CPU path."""

    def evaluation_batches(self, items: Items, protocol: Protocol,
                           device: torch.device | None) -> Iterator[tuple[np.ndarray, Any]]:
        """(positions, the network's input for the items at those positions), never augmented, a batch at a time,
        until every item has come once; in whatever order the kind embeds fastest (text: by length)."""

    def check_fits(self, items: Items, split: Split, protocol: Protocol) -> None:
        """That the network takes these items: built once, one batch through it."""


def _rooms() -> list[Modality]:
    from harness.image.modality import IMAGE
    from harness.text.modality import TEXT

    return [TEXT, IMAGE]


def rooms() -> list[Modality]:
    """Every modality, images first (the order `harness datasets` lists them in)."""
    return _rooms()[::-1]


def modality_named(kind: str) -> Modality:
    for room in _rooms():
        if room.name == kind:
            return room
    raise HarnessError(f"unknown input kind '{kind}'; known: {', '.join(room.name for room in _rooms())}")


def room_of(items: Items) -> Modality:
    """The modality that made `items`, which trains and embeds them."""
    return modality_named(items.kind)


def modality_of(dataset: str) -> Modality:
    """The kind a dataset (a known name or a path) belongs to."""
    check_dataset_name(dataset)
    return next(room for room in _rooms() if room.owns(dataset))  # text first: images own every other path


def floor_named(name: str) -> Floor | None:
    """The floor of that name, of whichever modality has it; None for every other name."""
    return next((room.floors[name] for room in _rooms() if name in room.floors), None)


def check_kind(dataset: str, protocol: Protocol) -> Modality:
    """The dataset's modality, which must be the protocol's: one line naming both otherwise."""
    room = modality_of(dataset)
    if protocol.input.kind != room.name:
        raise HarnessError(f"protocol {protocol.name} is for {protocol.input.kind} (its [input] kind), but dataset "
                           f"{dataset} is {room.name}; try --protocol {room.default_protocol}")
    return room
