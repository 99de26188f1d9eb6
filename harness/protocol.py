"""The frozen protocol: every setting held fixed across losses, loaded from TOML and hashed.

Only the loss and its own hyperparameters vary between runs that share a protocol hash. The hash is
the sha256 of the protocol's canonical JSON, so changing any field (a learning rate, the seed, the
number of trials) gives a new hash, a new Optuna study and a separate leaderboard table.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

__all__ = ["Protocol", "load_protocol", "available_protocols", "PROTOCOL_DIR"]

PROTOCOL_DIR = Path(__file__).parent / "protocols"
OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")


@dataclass(frozen=True)
class ModelSettings:
    backbone: str = "test_convnext3"  # a timm model name
    pretrained: bool = False
    freeze_batchnorm: bool = False
    embedding_size: int = 128
    normalize_embeddings: bool = True


@dataclass(frozen=True)
class OptimizerSettings:
    name: str = "adam"
    trunk_lr: float = 1e-3
    embedder_lr: float = 1e-3
    loss_lr: float = 1e-3  # default for a loss's own parameters (proxies); a loss may search its own
    weight_decay: float = 1e-4
    momentum: float = 0.9  # used by rmsprop and sgd only


@dataclass(frozen=True)
class BatchSettings:
    batch_size: int = 64
    m_per_class: int = 4


@dataclass(frozen=True)
class ImageSettings:
    image_size: int = 32
    mean: float = 0.5
    std: float = 0.5
    # training-time random affine; evaluation never augments
    rotation_degrees: float = 10.0
    translate: float = 0.08
    scale_min: float = 0.9
    scale_max: float = 1.1
    shear_degrees: float = 5.0


@dataclass(frozen=True)
class BudgetSettings:
    max_iterations: int = 400
    validation_interval: int = 100
    patience: int = 2  # validations without improvement before stopping early


@dataclass(frozen=True)
class SearchSettings:
    folds: int = 4
    trials: int = 6
    reproductions: int = 3
    seed: int = 0


@dataclass(frozen=True)
class Protocol:
    name: str
    version: int
    description: str
    model: ModelSettings = field(default_factory=ModelSettings)
    optimizer: OptimizerSettings = field(default_factory=OptimizerSettings)
    batch: BatchSettings = field(default_factory=BatchSettings)
    images: ImageSettings = field(default_factory=ImageSettings)
    budget: BudgetSettings = field(default_factory=BudgetSettings)
    search: SearchSettings = field(default_factory=SearchSettings)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def hash(self) -> str:
        """sha256 of the canonical JSON: sorted keys, no whitespace."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def short_hash(self) -> str:
        return self.hash[:12]

    def with_overrides(self, *, trials: int | None = None, reproductions: int | None = None,
                       seed: int | None = None) -> Protocol:
        """A variant protocol; the changed fields give it a new hash, so its results never mix."""
        changes = {k: v for k, v in
                   {"trials": trials, "reproductions": reproductions, "seed": seed}.items() if v is not None}
        if not changes:
            return self
        protocol = dataclasses.replace(self, search=dataclasses.replace(self.search, **changes))
        _validate(protocol, f"protocol '{self.name}' with {changes}")
        return protocol


_SECTION_TYPES = {
    "model": ModelSettings, "optimizer": OptimizerSettings, "batch": BatchSettings,
    "images": ImageSettings, "budget": BudgetSettings, "search": SearchSettings,
}


def available_protocols() -> list[str]:
    return sorted(p.stem for p in PROTOCOL_DIR.glob("*.toml"))


def load_protocol(name_or_path: str | Path) -> Protocol:
    """Load a shipped protocol by name (`quick`) or any TOML file by path."""
    text = str(name_or_path)
    if text.endswith(".toml") or "/" in text:
        path = Path(text)
        if not path.is_file():
            raise HarnessError(f"protocol file not found: {path}")
    else:
        path = PROTOCOL_DIR / f"{text}.toml"
        if not path.is_file():
            raise HarnessError(
                f"unknown protocol '{text}'; known protocols: {', '.join(available_protocols())} "
                "(or give a path to a .toml file)"
            )
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise HarnessError(f"protocol file {path} is not valid TOML: {error}") from error
    return protocol_from_dict(data, source=str(path))


def protocol_from_dict(data: dict[str, Any], *, source: str = "protocol") -> Protocol:
    top_fields = {"name", "version", "description", *_SECTION_TYPES}
    unknown = sorted(set(data) - top_fields)
    if unknown:
        raise HarnessError(f"{source}: unknown key(s) {', '.join(unknown)}; "
                           f"allowed: {', '.join(sorted(top_fields))}")
    for required in ("name", "version", "description"):
        if required not in data:
            raise HarnessError(f"{source}: missing required key '{required}'")
    sections = {}
    for section, cls in _SECTION_TYPES.items():
        values = data.get(section, {})
        if not isinstance(values, dict):
            raise HarnessError(f"{source}: [{section}] must be a table")
        allowed = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise HarnessError(f"{source}: unknown key(s) in [{section}]: {', '.join(unknown)}; "
                               f"allowed: {', '.join(sorted(allowed))}")
        checked = {key: _coerce(f"{source}: [{section}] {key}", value, allowed[key])
                   for key, value in values.items()}
        sections[section] = cls(**checked)
    protocol = Protocol(name=str(data["name"]), version=int(data["version"]),
                        description=str(data["description"]), **sections)
    _validate(protocol, source)
    return protocol


def _coerce(where: str, value: Any, spec: dataclasses.Field) -> Any:
    expected = type(spec.default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not expected:
        raise HarnessError(f"{where} must be {expected.__name__}, got {value!r}")
    return value


def _validate(p: Protocol, source: str) -> None:
    checks = [
        (p.model.embedding_size > 0, "model.embedding_size must be positive"),
        (p.optimizer.name in OPTIMIZERS, f"optimizer.name must be one of {', '.join(OPTIMIZERS)}"),
        (min(p.optimizer.trunk_lr, p.optimizer.embedder_lr, p.optimizer.loss_lr) > 0,
         "learning rates must be positive"),
        (p.batch.m_per_class >= 2, "batch.m_per_class must be at least 2 (a class needs a positive pair)"),
        (p.batch.batch_size % p.batch.m_per_class == 0 and p.batch.batch_size // p.batch.m_per_class >= 2,
         "batch.batch_size must be a multiple of m_per_class covering at least 2 classes"),
        (p.images.image_size >= 8, "images.image_size must be at least 8"),
        (p.images.std > 0, "images.std must be positive"),
        (0 < p.images.scale_min <= p.images.scale_max, "images.scale_min must be in (0, scale_max]"),
        (p.budget.max_iterations > 0, "budget.max_iterations must be positive"),
        (0 < p.budget.validation_interval <= p.budget.max_iterations,
         "budget.validation_interval must be in [1, max_iterations]"),
        (p.budget.patience >= 1, "budget.patience must be at least 1"),
        (p.search.folds >= 2, "search.folds must be at least 2"),
        (p.search.trials >= 1, "search.trials must be at least 1"),
        (p.search.reproductions >= 1, "search.reproductions must be at least 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise HarnessError(f"{source}: {message}")
