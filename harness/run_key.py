"""One key for one run's work: dataset, dataset version, protocol hash, loss and the loss's identity.

Studies are named by it, records carry it, `--if-missing` looks it up and tables group by it, so a
changed loss (its code identity, losses.identity), dataset copy or protocol is a different key
everywhere at once: a new study and a new row, never a silent continuation of the old one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["RunKey"]


@dataclass(frozen=True)
class RunKey:
    """What makes two runs the same work. `protocol_name` only names things; it is not compared.
    `loss_identity` is None for the baseline (no loss code runs) and for records made before identities."""

    dataset: str
    dataset_version: str | None
    protocol_hash: str
    loss: str
    loss_identity: str | None
    protocol_name: str = field(default="", compare=False)

    @property
    def study_name(self) -> str:
        """The search study of this key (the test stage's is this plus `__test`); a changed loss or
        protocol starts a study of its own."""
        loss = self.loss if self.loss_identity is None else f"{self.loss}-{self.loss_identity[:12]}"
        return f"{self.dataset}__{self.protocol_name}-{self.protocol_hash[:12]}__{loss}"

    def as_dict(self) -> dict:
        return {"dataset": self.dataset, "dataset_version": self.dataset_version,
                "protocol_hash": self.protocol_hash, "loss": self.loss, "loss_identity": self.loss_identity}
