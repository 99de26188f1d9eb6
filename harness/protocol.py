"""The frozen protocol: every setting held fixed across losses, loaded from TOML and hashed.

Only the loss and its own hyperparameters vary between runs that share a protocol hash. The hash is
the sha256 of the protocol's canonical JSON, so changing any field (a learning rate, the seed, the
number of trials, the sha256 of a local weights file) gives a new hash, a new Optuna study and a
separate leaderboard table.

A protocol file may hold per-dataset settings (`[datasets.<name>.<section>]`); `load_protocol(...,
dataset=...)` merges them into the effective protocol, which is what runs, is recorded and is hashed.
Fields added after a protocol's hash was first published enter the canonical JSON only when set away
from their default, so adding a field never re-hashes (and orphans) existing results.
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

__all__ = ["Protocol", "load_protocol", "available_protocols", "PROTOCOL_DIR", "TRANSFORMS"]

PROTOCOL_DIR = Path(__file__).parent / "protocols"
OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
TRANSFORMS = ("affine", "resized_crop")
CHANNEL_ORDERS = ("RGB", "BGR")
PRUNERS = ("none", "median")
KINDS = ("image", "text")
SAMPLERS = ("m_per_class", "group_by_label")

# field metadata: ADDED marks a field added after hashes were published (left out of the canonical
# JSON at its default); UNHASHED a field whose content is hashed through another (a weights path
# through its sha256, so the same file hashes alike on every machine); PER_CHANNEL a number or a list
ADDED = {"added": True}
UNHASHED = {"hashed": False}
PER_CHANNEL = {"per_channel": True}


@dataclass(frozen=True)
class ModelSettings:
    backbone: str = "test_convnext3"  # a timm model name
    pretrained: bool = False
    freeze_batchnorm: bool = False
    embedding_size: int = 128
    normalize_embeddings: bool = True
    weights: str = field(default="", metadata=UNHASHED)  # optional local state dict for the backbone
    weights_sha256: str = field(default="", metadata=ADDED)  # filled in from `weights` when loading
    # numerics of the forward pass, so part of the hash: "bfloat16" runs the forward and the loss under
    # bfloat16 autocast (parameters, optimizer state and the loss value stay float32)
    precision: str = field(default="float32", metadata=ADDED)
    channels_last: bool = field(default=False, metadata=ADDED)  # model and batches in NHWC memory format


@dataclass(frozen=True)
class OptimizerSettings:
    name: str = "adam"
    trunk_lr: float = 1e-3
    embedder_lr: float = 1e-3
    loss_lr: float = 1e-3  # default for a loss's own parameters (proxies); a loss may search its own
    weight_decay: float = 1e-4
    momentum: float = 0.9  # used by rmsprop and sgd only
    # if set, every learning rate rises linearly from 1/warmup_iterations of itself to itself over the first
    # this-many iterations (sentence-transformers' trainer warms up by default), then stays
    warmup_iterations: int = field(default=0, metadata=ADDED)


@dataclass(frozen=True)
class BatchSettings:
    batch_size: int = 64
    m_per_class: int = 4
    # "m_per_class": batch_size/m classes, m items each (harness.sampler); "group_by_label": sentence-transformers'
    # GroupByLabelBatchSampler (v5.3), so its users can compare like with like
    sampler: str = field(default="m_per_class", metadata=ADDED)


@dataclass(frozen=True)
class InputSettings:
    """The input kind (harness.modality): the dataset must be of the same kind."""

    kind: str = field(default="image", metadata=ADDED)


@dataclass(frozen=True)
class TextSettings:
    """What a text protocol trains on top of its sentence-transformers encoder (harness.text). The encoder's
    first layers run once per dataset into a feature cache; the last `trained_layers` transformer layers
    (0: none) and, if `head_hidden` > 0, a residual MLP of that width on the pooled output, are trained.
    Both start as the encoder itself (the MLP's last layer at zero), so the untrained network embeds
    exactly as `SentenceTransformer.encode(..., normalize_embeddings=True)`."""

    encoder: str = field(default="all-MiniLM-L6-v2", metadata=UNHASHED)  # a model directory or package name
    encoder_sha256: str = field(default="", metadata=ADDED)  # the weights' sha256, filled in when loading
    trained_layers: int = field(default=0, metadata=ADDED)
    head_hidden: int = field(default=0, metadata=ADDED)
    max_seq_length: int = field(default=0, metadata=ADDED)  # tokens kept per text; 0: the encoder's own


@dataclass(frozen=True)
class ImageSettings:
    """What the network sees. `affine` (in-memory sets such as glyphs): the stored image_size-px
    images, a random affine when training. `resized_crop` (image files): each image decoded once and
    resized to `resize` px on its shorter side into the cache; training takes a random resized crop
    of image_size px (area scale and aspect ratio drawn from the ranges below) and a horizontal flip,
    evaluation the centre crop. Pixels then go to [0, pixel_range] in `channel_order`, minus mean,
    over std (a number, or one per channel)."""

    image_size: int = 32
    mean: float = field(default=0.5, metadata=PER_CHANNEL)
    std: float = field(default=0.5, metadata=PER_CHANNEL)
    # training-time random affine; evaluation never augments
    rotation_degrees: float = 10.0
    translate: float = 0.08
    scale_min: float = 0.9
    scale_max: float = 1.1
    shear_degrees: float = 5.0
    transform: str = field(default="affine", metadata=ADDED)
    resize: int = field(default=0, metadata=ADDED)  # shorter side in the cache; resized_crop only
    crop_scale_min: float = field(default=0.08, metadata=ADDED)
    crop_scale_max: float = field(default=1.0, metadata=ADDED)
    crop_ratio_min: float = field(default=0.75, metadata=ADDED)
    crop_ratio_max: float = field(default=4 / 3, metadata=ADDED)
    horizontal_flip: bool = field(default=False, metadata=ADDED)
    channel_order: str = field(default="RGB", metadata=ADDED)
    pixel_range: float = field(default=1.0, metadata=ADDED)  # 1.0: pixels in [0, 1]; 255.0: [0, 255]

    def per_channel(self, name: str, channels: int) -> tuple[float, ...]:
        """`mean` or `std` as one value per channel."""
        value = getattr(self, name)
        values = tuple(value) if isinstance(value, tuple) else (value,)
        if len(values) == 1:
            return values * channels
        if len(values) != channels:
            raise HarnessError(f"images.{name} has {len(values)} values but the images have {channels} channels")
        return values


@dataclass(frozen=True)
class BudgetSettings:
    max_iterations: int = 400
    validation_interval: int = 100
    patience: int = 2  # validations without improvement before stopping early
    # if set, stop instead when the best validation is more than this many iterations old (the
    # reality-check code's rule, `epoch - best_epoch > patience`, with patience in epochs)
    patience_iterations: int = field(default=0, metadata=ADDED)
    # if set, validation and test score only the first this-many classes of each validation window and of
    # the test half (training is unchanged): for checks such as `smoke`, whose cost must not grow with the
    # test half; figures to report always score every class (0)
    eval_classes: int = field(default=0, metadata=ADDED)


@dataclass(frozen=True)
class SearchSettings:
    folds: int = 4
    trials: int = 6
    reproductions: int = 3
    seed: int = 0
    # "median": after each fold, a trial whose running mean validation MAP@R is below the median of the
    # earlier trials' running means after the same fold stops there (Optuna's MedianPruner), once
    # pruner_startup_trials trials have finished. It changes which trials train fully, so it is hashed.
    pruner: str = field(default="none", metadata=ADDED)
    pruner_startup_trials: int = field(default=2, metadata=ADDED)


@dataclass(frozen=True)
class Protocol:
    name: str
    version: int
    description: str
    model: ModelSettings = field(default_factory=ModelSettings)
    optimizer: OptimizerSettings = field(default_factory=OptimizerSettings)
    batch: BatchSettings = field(default_factory=BatchSettings)
    input: InputSettings = field(default_factory=InputSettings)
    images: ImageSettings = field(default_factory=ImageSettings)
    text: TextSettings = field(default_factory=TextSettings)
    budget: BudgetSettings = field(default_factory=BudgetSettings)
    search: SearchSettings = field(default_factory=SearchSettings)

    def to_dict(self) -> dict[str, Any]:
        """Every field, for the record; a section added later is left out while at its defaults."""
        data = dataclasses.asdict(self)
        for section in _ADDED_SECTIONS:
            if getattr(self, section) == _SECTION_TYPES[section]():
                del data[section]
        return data

    def canonical_dict(self) -> dict[str, Any]:
        """What the hash covers: every field, except unhashed ones and later additions at their default."""
        canonical: dict[str, Any] = {"name": self.name, "version": self.version, "description": self.description}
        for section in _SECTION_TYPES:
            settings = getattr(self, section)
            values = {
                f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)
                if f.metadata.get("hashed", True)
                and not (f.metadata.get("added") and getattr(settings, f.name) == f.default)
            }
            if values or section not in _ADDED_SECTIONS:
                canonical[section] = values
        return canonical

    @property
    def hash(self) -> str:
        """sha256 of the canonical JSON: sorted keys, no whitespace."""
        canonical = json.dumps(self.canonical_dict(), sort_keys=True, separators=(",", ":"))
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
    "model": ModelSettings, "optimizer": OptimizerSettings, "batch": BatchSettings, "input": InputSettings,
    "images": ImageSettings, "text": TextSettings, "budget": BudgetSettings, "search": SearchSettings,
}
_ADDED_SECTIONS = ("input", "text")  # sections added after hashes were published: left out while empty


def available_protocols() -> list[str]:
    return sorted(p.stem for p in PROTOCOL_DIR.glob("*.toml"))


def load_protocol(name_or_path: str | Path, *, dataset: str | None = None) -> Protocol:
    """Load a shipped protocol by name (`quick`) or any TOML file by path; with `dataset`, the
    effective protocol for it (the file's `[datasets.<dataset>]` settings merged in)."""
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
    per_dataset = data.pop("datasets", {})
    if not isinstance(per_dataset, dict) or not all(isinstance(v, dict) for v in per_dataset.values()):
        raise HarnessError(f"{path}: [datasets] must hold one table per dataset, e.g. [datasets.cub200.budget]")
    for name, sections in per_dataset.items():  # every dataset's settings must be valid, not only the one run
        protocol_from_dict(_merge(data, sections, f"{path}: [datasets.{name}]"),
                           source=f"{path} [datasets.{name}]", base_dir=path.parent)
    if dataset in per_dataset:
        data = _merge(data, per_dataset[dataset], f"{path}: [datasets.{dataset}]")
    return protocol_from_dict(data, source=str(path), base_dir=path.parent)


def _merge(data: dict[str, Any], overrides: dict[str, Any], where: str) -> dict[str, Any]:
    """The base settings with one dataset's section overrides laid over them."""
    merged = {key: dict(value) if isinstance(value, dict) else value for key, value in data.items()}
    for section, values in overrides.items():
        if section not in _SECTION_TYPES or not isinstance(values, dict):
            raise HarnessError(f"{where}: '{section}' is not a settings section; "
                               f"allowed: {', '.join(_SECTION_TYPES)}")
        merged.setdefault(section, {}).update(values)
    return merged


def protocol_from_dict(data: dict[str, Any], *, source: str = "protocol", base_dir: Path | None = None) -> Protocol:
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
        if section == "model" and checked.get("weights"):
            checked["weights"], checked["weights_sha256"] = _weights_file(checked["weights"], base_dir, source)
        if section == "text" and data.get("input", {}).get("kind") == "text":
            from harness.text.encoder import encoder_sha256

            checked["encoder_sha256"] = encoder_sha256(checked.get("encoder", TextSettings.encoder), base_dir,
                                                       f"{source}: [text] encoder")
        sections[section] = cls(**checked)
    protocol = Protocol(name=str(data["name"]), version=int(data["version"]),
                        description=str(data["description"]), **sections)
    _validate(protocol, source)
    return protocol


def _weights_file(value: str, base_dir: Path | None, source: str) -> tuple[str, str]:
    """The weights file (relative paths from the protocol file's folder) and its sha256."""
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None and not path.is_file():
        path = base_dir / path
    if not path.is_file():
        raise HarnessError(f"{source}: [model] weights file not found: {value}")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return str(path.resolve()), digest.hexdigest()


def _coerce(where: str, value: Any, spec: dataclasses.Field) -> Any:
    expected = type(spec.default)
    if spec.metadata.get("per_channel") and isinstance(value, list):
        if not value or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            raise HarnessError(f"{where} must be a number or a list of numbers, got {value!r}")
        return tuple(float(v) for v in value) if len(value) > 1 else float(value[0])
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not expected:
        raise HarnessError(f"{where} must be {expected.__name__}, got {value!r}")
    return value


def _validate(p: Protocol, source: str) -> None:
    checks = [
        (p.model.embedding_size > 0, "model.embedding_size must be positive"),
        (p.model.precision in ("float32", "bfloat16"), "model.precision must be one of float32, bfloat16"),
        (p.optimizer.name in OPTIMIZERS, f"optimizer.name must be one of {', '.join(OPTIMIZERS)}"),
        (min(p.optimizer.trunk_lr, p.optimizer.embedder_lr, p.optimizer.loss_lr) > 0,
         "learning rates must be positive"),
        (p.input.kind in KINDS, f"input.kind must be one of {', '.join(KINDS)}"),
        (p.batch.sampler in SAMPLERS, f"batch.sampler must be one of {', '.join(SAMPLERS)}"),
        (p.text.trained_layers >= 0 and p.text.head_hidden >= 0 and p.text.max_seq_length >= 0,
         "text.trained_layers, text.head_hidden and text.max_seq_length must not be negative"),
        (p.batch.m_per_class >= 2, "batch.m_per_class must be at least 2 (a class needs a positive pair)"),
        (p.batch.batch_size % p.batch.m_per_class == 0 and p.batch.batch_size // p.batch.m_per_class >= 2,
         "batch.batch_size must be a multiple of m_per_class covering at least 2 classes"),
        (p.images.image_size >= 8, "images.image_size must be at least 8"),
        (all(s > 0 for s in (p.images.std if isinstance(p.images.std, tuple) else (p.images.std,))),
         "images.std must be positive"),
        (0 < p.images.scale_min <= p.images.scale_max, "images.scale_min must be in (0, scale_max]"),
        (p.images.transform in TRANSFORMS, f"images.transform must be one of {', '.join(TRANSFORMS)}"),
        (p.images.transform != "resized_crop" or p.images.resize >= p.images.image_size,
         "images.resize (the cached shorter side) must be at least images.image_size for resized_crop"),
        (0 < p.images.crop_scale_min <= p.images.crop_scale_max <= 1,
         "images.crop_scale_min and crop_scale_max must satisfy 0 < min <= max <= 1"),
        (0 < p.images.crop_ratio_min <= p.images.crop_ratio_max,
         "images.crop_ratio_min must be in (0, crop_ratio_max]"),
        (p.images.channel_order in CHANNEL_ORDERS, f"images.channel_order must be one of {', '.join(CHANNEL_ORDERS)}"),
        (p.images.pixel_range in (1.0, 255.0), "images.pixel_range must be 1.0 or 255.0"),
        (p.optimizer.warmup_iterations >= 0, "optimizer.warmup_iterations must not be negative"),
        (p.budget.patience_iterations >= 0, "budget.patience_iterations must not be negative"),
        (p.budget.max_iterations > 0, "budget.max_iterations must be positive"),
        (0 < p.budget.validation_interval <= p.budget.max_iterations,
         "budget.validation_interval must be in [1, max_iterations]"),
        (p.budget.patience >= 1, "budget.patience must be at least 1"),
        (p.budget.eval_classes == 0 or p.budget.eval_classes >= 2,
         "budget.eval_classes must be 0 (every class) or at least 2"),
        (p.search.folds >= 2, "search.folds must be at least 2"),
        (p.search.trials >= 1, "search.trials must be at least 1"),
        (p.search.reproductions >= 1, "search.reproductions must be at least 1"),
        (p.search.pruner in PRUNERS, f"search.pruner must be one of {', '.join(PRUNERS)}"),
        (p.search.pruner_startup_trials >= 1, "search.pruner_startup_trials must be at least 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise HarnessError(f"{source}: {message}")
