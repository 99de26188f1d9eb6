"""Training one fold model: class-balanced batches, periodic validation MAP@R, early stopping.

The whole loop is in `train_fold` so a reader sees every step; the best checkpoint (by validation
MAP@R) is kept in memory and loaded back before returning. The protocol's `model.precision` and
`model.channels_last` set the numerics of every forward pass, in training and in `embed` alike; at
their defaults (float32, contiguous) no autocast is entered and no layout changed.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch

import losses
from harness.diagnostics import batch_diagnostics, collapsed
from harness.errors import HarnessError, LossNotFinite, LossRaised, TrainingNotFinite
from harness.metrics import retrieval_metrics
from harness.modality import Items, room_of
from harness.protocol import OptimizerSettings, Protocol
from harness.sampler import make_sampler
from harness.seeding import derive_seed, seed_everything

__all__ = ["FoldResult", "build_model", "check_embeddings", "embed", "train_fold", "default_device"]

LOSS_LR_KEY = "loss_lr"  # a searched hyperparameter the harness consumes, not the loss


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class FoldResult:
    """A trained fold. history: per validation step, the iteration, the loss's own value, validation
    MAP@R and the batch's diagnostics (harness.diagnostics); collapsed: their collapse flag."""

    model: torch.nn.Module
    best_val_map_at_r: float
    best_iteration: int
    iterations_run: int
    history: list[dict] = field(default_factory=list)
    collapsed: bool = False


def build_model(protocol: Protocol, items: Items, seed: int) -> torch.nn.Module:
    """The network as initialised (its modality builds it): the same seed gives the same weights for every loss."""
    seed_everything(seed)
    return room_of(items).build_network(protocol, items)


def _placed(model: torch.nn.Module, protocol: Protocol, device: torch.device) -> torch.nn.Module:
    """The model on `device`, in the protocol's memory format."""
    if protocol.model.channels_last:
        return model.to(device, memory_format=torch.channels_last)
    return model.to(device)


def _laid_out(batch, protocol: Protocol):
    """The batch in the model's memory format, so no layer converts it on the way."""
    return batch.contiguous(memory_format=torch.channels_last) if protocol.model.channels_last else batch


def _forward_precision(protocol: Protocol, device: torch.device) -> AbstractContextManager:
    """bfloat16 autocast where the protocol asks for it; a float32 protocol enters none, so its
    numerics are exactly those of code that never heard of autocast."""
    if protocol.model.precision == "bfloat16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def _batch_device(device: torch.device) -> torch.device | None:
    """Where batches are made: on a GPU the device itself; on the CPU the reference CPU path (None)."""
    return None if device.type == "cpu" else device


@torch.no_grad()
def embed(model: torch.nn.Module, data: Items, protocol: Protocol, *, device: torch.device | None = None) -> np.ndarray:
    """Evaluation embeddings (no augmentation) of every item of `data`, float32 [N, D], from the batches its
    modality makes one at a time. The model is moved to `device` (and the protocol's memory format) if it is
    not there yet."""
    device = device or default_device()
    model = _placed(model, protocol, device).eval()
    out = None
    for positions, batch in room_of(data).evaluation_batches(data, protocol, _batch_device(device)):
        with _forward_precision(protocol, device):
            embeddings = model(_laid_out(batch, protocol)).float().cpu().numpy()
        if out is None:
            out = np.empty((len(data), embeddings.shape[1]), dtype=np.float32)
        out[positions] = embeddings
    return out


def _optimizer(settings: OptimizerSettings, groups: list[dict]) -> torch.optim.Optimizer:
    groups = [g for g in groups if g["params"]]
    if settings.name == "adam":
        return torch.optim.Adam(groups, weight_decay=settings.weight_decay)
    if settings.name == "adamw":
        return torch.optim.AdamW(groups, weight_decay=settings.weight_decay)
    if settings.name == "rmsprop":
        return torch.optim.RMSprop(groups, weight_decay=settings.weight_decay, momentum=settings.momentum)
    if settings.name == "sgd":
        return torch.optim.SGD(groups, weight_decay=settings.weight_decay, momentum=settings.momentum)
    raise HarnessError(f"unknown optimizer '{settings.name}'")


@contextmanager
def _loss_code(loss_name: str, when: str) -> Iterator[None]:
    """An exception from the loss's own code fails the trial with its type and message, not the study."""
    try:
        yield
    except (HarnessError, losses.LossError):  # the harness's own checks, or hyperparameters the loss refuses
        raise
    except Exception as error:
        cause = f"{type(error).__name__}: {error}"
        raise LossRaised(f"loss '{loss_name}' raised {cause} in {when}", cause) from error


def _check_scalar(loss: object, loss_name: str) -> None:
    """forward must return one number: anything else ends the run at once, naming what came back."""
    if isinstance(loss, torch.Tensor) and loss.ndim == 0:
        return
    what = (f"a tensor of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor)
            else f"a {type(loss).__name__}")
    raise HarnessError(f"loss '{loss_name}' returned {what} from forward(embeddings, labels), but a loss must "
                       "return a scalar tensor (reduce it, e.g. with .mean())")


def _finite(tensors: list[torch.Tensor]) -> bool:
    """Whether every value of every tensor is finite, with one device sync."""
    return not tensors or bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


def check_embeddings(embeddings: np.ndarray, what: str) -> None:
    """Embeddings a trained network produced must be finite: otherwise the training failed (not the input)."""
    finite = np.isfinite(embeddings)
    if not finite.all():
        row, column = (int(i) for i in np.argwhere(~finite)[0])
        raise TrainingNotFinite(f"{what} are non-finite ({embeddings[row, column]} at row {row}, column {column}, "
                                f"{int((~finite.all(axis=1)).sum())} of {len(embeddings)} rows)",
                                f"{what.split(' at ')[0]} non-finite")


def train_fold(*, protocol: Protocol, loss_name: str, hparams: dict, train_set: Items,
               val_set: Items, seed: int, device: torch.device | None = None,
               on_validation: Callable[[int, float], None] | None = None) -> FoldResult:
    """Train on `train_set`'s classes, keep the checkpoint with the best MAP@R on `val_set`.

    Raises LossNotFinite (with the iteration and value) if the loss is NaN or infinite, and
    TrainingNotFinite if its gradients, the weights or the validation embeddings are: each fails the
    trial it belongs to, never the run.
    """
    device = device or default_device()
    budget = protocol.budget
    model = _placed(build_model(protocol, train_set, seed=seed), protocol, device)
    modality = room_of(train_set)
    # proxies and class-indexed parameters need labels 0..k-1 of the training classes
    train_classes, train_labels = torch.unique(train_set.labels, return_inverse=True)
    loss_params = dict(hparams)
    loss_lr = float(loss_params.pop(LOSS_LR_KEY, protocol.optimizer.loss_lr))
    with _loss_code(loss_name, "building it"):
        criterion = losses.build(loss_name, embedding_dim=protocol.model.embedding_size,
                                 num_classes=len(train_classes), **loss_params).to(device)
    optimizer = _optimizer(protocol.optimizer, [
        {"params": [p for p in model.trunk.parameters() if p.requires_grad], "lr": protocol.optimizer.trunk_lr},
        {"params": list(model.embedder.parameters()), "lr": protocol.optimizer.embedder_lr},
        {"params": [p for p in criterion.parameters() if p.requires_grad], "lr": loss_lr},
    ])
    warmup = protocol.optimizer.warmup_iterations
    schedule = (torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
                if warmup else None)
    sampler = make_sampler(train_labels, protocol.batch, seed=derive_seed(seed, "sampler"))
    augment_rng = torch.Generator().manual_seed(derive_seed(seed, "augment"))
    batch_device = _batch_device(device)

    best_score, best_iteration, best_state, stale, history = -math.inf, 0, None, 0, []
    iteration = 0
    for iteration in range(1, budget.max_iterations + 1):
        model.train()
        index = sampler.next_batch()
        batch = modality.training_batch(train_set, index.numpy(), protocol, augment_rng, batch_device)
        labels = train_labels[index] if batch_device is None else train_labels[index].to(batch_device)
        with _forward_precision(protocol, device):
            embeddings = model(_laid_out(batch, protocol))
            with _loss_code(loss_name, f"its forward at iteration {iteration}"):
                loss = criterion(embeddings, labels)
        _check_scalar(loss, loss_name)
        if protocol.model.precision == "bfloat16":
            loss = loss.float()  # the value checked and recorded is float32
        if not torch.isfinite(loss):
            raise LossNotFinite(f"loss '{loss_name}' with {hparams} became {loss.item()} "
                                f"at iteration {iteration}", f"became {loss.item()}")
        optimizer.zero_grad(set_to_none=True)
        with _loss_code(loss_name, f"the backward pass at iteration {iteration}"):
            loss.backward()
        if not _finite([p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]):
            raise TrainingNotFinite(f"loss '{loss_name}' with {hparams} gave non-finite gradients at iteration "
                                    f"{iteration} (its value was {loss.item()})", "gradients non-finite")
        optimizer.step()
        if schedule is not None:
            schedule.step()
        if iteration % budget.validation_interval and iteration != budget.max_iterations:
            continue
        if not _finite([p.detach() for p in model.parameters()]):
            raise TrainingNotFinite(f"loss '{loss_name}' with {hparams}: the network's weights are non-finite at "
                                    f"iteration {iteration}", "weights non-finite")
        val_embeddings = embed(model, val_set, protocol, device=device)
        check_embeddings(val_embeddings, f"validation embeddings at iteration {iteration}")
        score = retrieval_metrics(val_embeddings, val_set.labels.numpy(),
                                  device=batch_device)["map_at_r"]  # on a GPU, the kNN search runs there too
        history.append({"iteration": iteration, "loss": float(loss.item()), "val_map_at_r": score,
                        **batch_diagnostics(embeddings, labels)})
        if on_validation:
            on_validation(iteration, score)
        if score > best_score:
            best_score, best_iteration, stale = score, iteration, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if (iteration - best_iteration > budget.patience_iterations if budget.patience_iterations
                    else stale >= budget.patience):
                break
    model.load_state_dict(best_state)
    model.eval()
    return FoldResult(model, best_score, best_iteration, iteration, history, collapsed(history))
