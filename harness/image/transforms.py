"""Image preparation, as the protocol fixes it: items of an ImageSet to a normalised float batch.

Two pipelines (`images.transform`). `affine`, for the in-memory glyphs: the stored images, a seeded
random affine when training. `resized_crop`, the reality check's: the cached images (already
Resize(256) on the shorter side) give RandomResizedCrop(227) and a horizontal flip when training and
CenterCrop(227) for evaluation. Every random draw comes from the caller's torch.Generator, so a seed
fixes the batches exactly; the normalisation (range, channel order, mean, std) is the same for both.

Given a `device`, a batch is made there: the uint8 pixels (for a training crop, only its region of the
cached image) cross once, from pinned memory without waiting, and the float work runs on the device.
The random draws are the CPU path's, from the same generator in the same order.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from harness.protocol import ImageSettings

__all__ = ["train_batch", "eval_batch", "random_resized_crop_box", "to_device", "to_float", "normalize",
           "random_affine"]


def train_batch(data, items: torch.Tensor | np.ndarray, settings: ImageSettings,
                generator: torch.Generator, device: torch.device | None = None) -> torch.Tensor:
    """The augmented, normalised training batch of `data`'s items (positions within `data`).

    With `device` the crops are resized there in float32 and rounded, as torchvision does for uint8
    images on a GPU; the CPU path (no device) keeps torchvision's native uint8 resize, so a crop's
    pixels may differ between the two by one level where the rounding falls differently.
    """
    rows = data.rows[np.asarray(items)]
    if settings.transform == "affine":
        pixels = to_device(data.pixels[torch.from_numpy(rows)], device)
        return normalize(random_affine(to_float(pixels), settings, generator), settings)
    draws = _crop_draws(data, rows, settings, generator)
    if device is not None:
        return _scaled(_resized_crops_on(device, data, draws, settings.image_size), settings)
    crops = []
    for row, (top, left, height, width), flip in draws:
        image = torch.from_numpy(np.array(data.pixels.image(row))).permute(2, 0, 1)  # copied from the map
        crop = TF.resized_crop(image, top, left, height, width, [settings.image_size] * 2, antialias=True)
        crops.append(crop.flip(-1) if flip else crop)
    return _scaled(torch.stack(crops), settings)


def _crop_draws(data, rows: np.ndarray, settings: ImageSettings,
                generator: torch.Generator) -> list[tuple[int, tuple[int, int, int, int], bool]]:
    """(row, crop box, flip) of each image, drawn in the order of the reference loop: an image's box,
    then its flip, then the next image's; only the cache's index is read, not the pixels."""
    draws = []
    for row in rows:
        height, width = data.pixels.image(int(row)).shape[:2]
        box = random_resized_crop_box(height, width, settings, generator)
        flip = settings.horizontal_flip and torch.rand(1, generator=generator).item() < 0.5
        draws.append((int(row), box, flip))
    return draws


def _resized_crops_on(device: torch.device, data, draws: list, size: int) -> torch.Tensor:
    """uint8 crops [B, 3, size, size] (as floats) made on `device`: each crop's region crosses, all in
    one copy, then is resized (antialiased bilinear, float32, rounded: torchvision's rule off the CPU)
    and flipped there."""
    regions = [data.pixels.image(row)[top:top + height, left:left + width]
               for row, (top, left, height, width), _ in draws]
    staged = torch.empty(sum(region.size for region in regions), dtype=torch.uint8,
                         pin_memory=device.type == "cuda")
    host, offset = staged.numpy(), 0
    for region in regions:  # straight from the map into the staging memory, nothing else read
        np.copyto(host[offset:offset + region.size].reshape(region.shape), region)
        offset += region.size
    pixels = staged.to(device, non_blocking=True).float()
    crops, offset = [], 0
    for region, (_, _, flip) in zip(regions, draws, strict=True):
        height, width = region.shape[:2]
        crop = pixels[offset:offset + region.size].view(1, height, width, 3).permute(0, 3, 1, 2)
        offset += region.size
        if (height, width) != (size, size):  # torchvision returns a crop of the output size as it is
            crop = F.interpolate(crop, size=[size, size], mode="bilinear", align_corners=False,
                                 antialias=True).round_()
        crops.append(crop[0].flip(-1) if flip else crop[0])
    return torch.stack(crops)


def to_device(batch: torch.Tensor, device: torch.device | None) -> torch.Tensor:
    """`batch` on `device` (None: left where it is); onto a GPU from pinned memory, without waiting."""
    if device is None:
        return batch
    if device.type == "cuda":
        batch = batch.pin_memory()
    return batch.to(device, non_blocking=True)


def eval_batch(data, items: np.ndarray, settings: ImageSettings,
               device: torch.device | None = None) -> torch.Tensor:
    """The evaluation batch: no augmentation (the centre crop for cached image files). On a `device`
    the uint8 pixels cross and are scaled there, by the same elementwise operations as on the CPU."""
    rows = data.rows[np.asarray(items)]
    if settings.transform == "affine":
        return normalize(to_float(to_device(data.pixels[torch.from_numpy(rows)], device)), settings)
    size = settings.image_size
    crops = []
    for row in rows:
        image = data.pixels.image(int(row))
        top = int(round((image.shape[0] - size) / 2.0))  # CenterCrop's rounding
        left = int(round((image.shape[1] - size) / 2.0))
        crops.append(torch.from_numpy(np.array(image[top:top + size, left:left + size])))
    return _scaled(to_device(torch.stack(crops), device).permute(0, 3, 1, 2), settings)


def random_resized_crop_box(height: int, width: int, settings: ImageSettings,
                            generator: torch.Generator) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a crop covering a random share of the area in [scale_min,
    scale_max] with a log-uniform aspect ratio in [ratio_min, ratio_max]; RandomResizedCrop's rule
    (10 attempts, then the centre crop of the clamped ratio), drawn from `generator`."""
    area = height * width
    log_ratio = (math.log(settings.crop_ratio_min), math.log(settings.crop_ratio_max))
    for _ in range(10):
        target = area * _uniform(settings.crop_scale_min, settings.crop_scale_max, generator)
        ratio = math.exp(_uniform(*log_ratio, generator))
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator).item())
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator).item())
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < settings.crop_ratio_min:
        w, h = width, int(round(width / settings.crop_ratio_min))
    elif in_ratio > settings.crop_ratio_max:
        h, w = height, int(round(height * settings.crop_ratio_max))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    return low + (high - low) * torch.rand(1, generator=generator, dtype=torch.float64).item()


def _scaled(batch: torch.Tensor, settings: ImageSettings) -> torch.Tensor:
    """uint8 RGB [B, 3, H, W] to float in the protocol's range and channel order, normalised."""
    images = batch.float()
    if settings.pixel_range == 1.0:
        images = images.div_(255.0)
    if settings.channel_order == "BGR":
        images = images.flip(1)
    return normalize(images, settings)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, C, H, W] to float in [0, 1]."""
    return images.float().div_(255.0)


def normalize(images: torch.Tensor, settings: ImageSettings) -> torch.Tensor:
    """(x - mean) / std, with one value for all channels or one per channel."""
    if not isinstance(settings.mean, tuple) and not isinstance(settings.std, tuple):
        return (images - settings.mean) / settings.std
    channels = images.shape[1]
    mean = torch.tensor(settings.per_channel("mean", channels), dtype=images.dtype, device=images.device)
    std = torch.tensor(settings.per_channel("std", channels), dtype=images.dtype, device=images.device)
    return (images - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def random_affine(images: torch.Tensor, settings: ImageSettings, generator: torch.Generator) -> torch.Tensor:
    """One random rotation, shear, scale and translation per image, drawn from `generator`.

    Done on the whole batch with one affine_grid/grid_sample, so it is cheap and reproducible; the
    background (0) fills what moves in from outside.
    """
    b = images.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(b, generator=generator)

    angle = uniform(-settings.rotation_degrees, settings.rotation_degrees) * (math.pi / 180)
    shear = uniform(-settings.shear_degrees, settings.shear_degrees) * (math.pi / 180)
    scale = uniform(settings.scale_min, settings.scale_max)
    tx = uniform(-settings.translate, settings.translate) * 2  # grid coordinates span [-1, 1]
    ty = uniform(-settings.translate, settings.translate) * 2
    cos, sin = torch.cos(angle), torch.sin(angle)
    # the grid maps output to input coordinates, so dividing by the scale enlarges the glyph
    theta = torch.stack([
        torch.stack([cos / scale, (-sin + torch.tan(shear) * cos) / scale, tx], dim=1),
        torch.stack([sin / scale, cos / scale, ty], dim=1),
    ], dim=1).to(images.dtype)
    grid = F.affine_grid(theta.to(images.device), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
