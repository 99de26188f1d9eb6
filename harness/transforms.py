"""Image preparation: uint8 to normalised float, and the seeded training-time random affine."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from harness.protocol import ImageSettings


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, C, H, W] to float in [0, 1]."""
    return images.float().div_(255.0)


def normalize(images: torch.Tensor, settings: ImageSettings) -> torch.Tensor:
    return (images - settings.mean) / settings.std


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
