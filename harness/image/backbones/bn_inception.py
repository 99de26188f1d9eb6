"""BN-Inception, the trunk of "A Metric Learning Reality Check" (Musgrave, Belongie & Lim, ECCV 2020).

The paper's code took `pretrainedmodels.bninception` (Remi Cadene's PyTorch port, version 0.7.4, of the
BN-Inception network of Ioffe & Szegedy 2015, trained on ImageNet by Yuanjun Xiong) and removed its last
layer, which leaves 1024-d pooled features. This module rebuilds that network with the same parameter and
buffer names and shapes, so the port's ImageNet state dict (`bn_inception-52deb4733.pth`, minus its
`last_linear.*` classifier) loads into it unchanged, and with random weights copied over it computes the
same features.

One deliberate difference: the final 7x7 map is reduced by global average pooling instead of the port's
`AvgPool2d(7, stride=1, ceil_mode=True, count_include_pad=True)`. On the 7x7 maps of 224 and 227 px inputs
the two are the same average; global pooling also gives one vector per image at other sizes, where the
port's pool either fails (maps below 7x7) or returns several positions.

Input: BGR channel order, pixel values in [0, 255] with the per-channel mean (104, 117, 128) subtracted
and no division (std 1), 224x224 as trained (the paper fed 227x227 crops). Other sizes work where the
port's ceil-mode pools keep the branches of the two grid-reduction blocks (3c, 4e) the same size: the map
entering each of them must have an even side, which holds for sides 31-38, 63-70, 95-102, ... (32k-1 to
32k+6 px). The smallest input that works is 31x31 px (its final map is 1x1); 32 and 64 px work, 39-62 px
do not. A size that does not fit raises HarnessError instead of a shape error deep inside torch.cat.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import HarnessError
from harness.image.backbones.weights import fit_state_dict, load_weights

__all__ = ["IMAGENET_WEIGHTS", "BNInception", "PretrainedWeights", "bn_inception", "input_side_fits"]


@dataclasses.dataclass(frozen=True)
class PretrainedWeights:
    """Where a weights file comes from and the input it was trained on."""

    url: str
    input_size: int
    channel_order: str
    pixel_range: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def file_name(self) -> str:
        """The name in torch's hub cache; the hex after '-' is the sha256 prefix torch checks."""
        return self.url.rsplit("/", 1)[-1]

    def metadata(self) -> dict:
        """What the data pipeline must produce for these weights."""
        return {"input_size": self.input_size, "channel_order": self.channel_order,
                "pixel_range": self.pixel_range, "mean": list(self.mean), "std": list(self.std)}


# The URL and preprocessing that pretrainedmodels 0.7.4 publishes for bninception "imagenet".
IMAGENET_WEIGHTS = PretrainedWeights(
    url="http://data.lip6.fr/cadene/pretrainedmodels/bn_inception-52deb4733.pth",
    input_size=224,
    channel_order="BGR",
    pixel_range=255.0,
    mean=(104.0, 117.0, 128.0),
    std=(1.0, 1.0, 1.0),
)

# The keys of the port's classifier, which this trunk does not have.
CLASSIFIER_PREFIX = "last_linear"


class _Block(NamedTuple):
    """Channel widths of one inception block; `one_by_one == 0` marks a grid reduction (stride 2)."""

    name: str
    in_channels: int
    one_by_one: int
    reduce_3x3: int
    out_3x3: int
    reduce_double: int
    out_double: int
    pool: str  # "avg" (3x3 s1, padded), "max" (3x3 s1, padded) or "max_s2" (3x3 s2, the reductions)
    pool_proj: int


_BLOCKS = (
    _Block("3a", 192, 64, 64, 64, 64, 96, "avg", 32),
    _Block("3b", 256, 64, 64, 96, 64, 96, "avg", 64),
    _Block("3c", 320, 0, 128, 160, 64, 96, "max_s2", 0),
    _Block("4a", 576, 224, 64, 96, 96, 128, "avg", 128),
    _Block("4b", 576, 192, 96, 128, 96, 128, "avg", 128),
    _Block("4c", 576, 160, 128, 160, 128, 160, "avg", 128),
    _Block("4d", 608, 96, 128, 192, 160, 192, "avg", 128),
    _Block("4e", 608, 0, 128, 192, 192, 256, "max_s2", 0),
    _Block("5a", 1056, 352, 192, 320, 160, 224, "avg", 128),
    _Block("5b", 1024, 352, 192, 320, 192, 224, "max", 128),
)


def _pool(kind: str) -> nn.Module:
    if kind == "avg":
        return nn.AvgPool2d(3, stride=1, padding=1, ceil_mode=True, count_include_pad=True)
    if kind == "max":
        return nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)
    return nn.MaxPool2d(3, stride=2, ceil_mode=True)


def input_side_fits(side: int) -> bool:
    """Whether an image side of `side` px passes the port's pools (see the module docstring)."""
    return side >= 31 and (side + 1) % 32 <= 7


class BNInception(nn.Module):
    """The port's layers under the port's attribute names; forward gives [B, 1024] pooled features."""

    num_features = 1024

    def __init__(self) -> None:
        super().__init__()
        self._add_unit("conv1_7x7_s2", 3, 64, 7, stride=2, padding=3)
        self.pool1_3x3_s2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self._add_unit("conv2_3x3_reduce", 64, 64, 1)
        self._add_unit("conv2_3x3", 64, 192, 3, padding=1)
        self.pool2_3x3_s2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        for block in _BLOCKS:
            prefix = f"inception_{block.name}"
            stride = 2 if block.one_by_one == 0 else 1
            if block.one_by_one:
                self._add_unit(f"{prefix}_1x1", block.in_channels, block.one_by_one, 1)
            self._add_unit(f"{prefix}_3x3_reduce", block.in_channels, block.reduce_3x3, 1)
            self._add_unit(f"{prefix}_3x3", block.reduce_3x3, block.out_3x3, 3, stride=stride, padding=1)
            self._add_unit(f"{prefix}_double_3x3_reduce", block.in_channels, block.reduce_double, 1)
            self._add_unit(f"{prefix}_double_3x3_1", block.reduce_double, block.out_double, 3, padding=1)
            self._add_unit(f"{prefix}_double_3x3_2", block.out_double, block.out_double, 3, stride=stride,
                           padding=1)
            setattr(self, f"{prefix}_pool", _pool(block.pool))
            if block.pool_proj:
                self._add_unit(f"{prefix}_pool_proj", block.in_channels, block.pool_proj, 1)

    def _add_unit(self, name: str, in_channels: int, out_channels: int, kernel: int, *, stride: int = 1,
                  padding: int = 0) -> None:
        """A biased conv `name` and its BatchNorm `name_bn`, as the port names them."""
        setattr(self, name, nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding))
        setattr(self, f"{name}_bn", nn.BatchNorm2d(out_channels))

    def _unit(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """conv -> BatchNorm -> ReLU, the port's order."""
        return F.relu(getattr(self, f"{name}_bn")(getattr(self, name)(x)), inplace=True)

    def _block(self, block: _Block, x: torch.Tensor) -> torch.Tensor:
        prefix = f"inception_{block.name}"
        branches = []
        if block.one_by_one:
            branches.append(self._unit(f"{prefix}_1x1", x))
        branches.append(self._unit(f"{prefix}_3x3", self._unit(f"{prefix}_3x3_reduce", x)))
        double = self._unit(f"{prefix}_double_3x3_reduce", x)
        double = self._unit(f"{prefix}_double_3x3_1", double)
        branches.append(self._unit(f"{prefix}_double_3x3_2", double))
        pooled = getattr(self, f"{prefix}_pool")(x)
        branches.append(self._unit(f"{prefix}_pool_proj", pooled) if block.pool_proj else pooled)
        return torch.cat(branches, dim=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last inception block's map, [B, 1024, about H/32, about W/32] (the port's `features`)."""
        if not all(input_side_fits(side) for side in x.shape[-2:]):
            raise HarnessError(f"BN-Inception cannot take a {x.shape[-2]}x{x.shape[-1]} input: each side must be "
                               f"32k-1 to 32k+6 px with k >= 1 (e.g. 32, 64, 224, 227), or its ceil-mode pools "
                               f"give branches of different sizes")
        x = self.pool1_3x3_s2(self._unit("conv1_7x7_s2", x))
        x = self._unit("conv2_3x3", self._unit("conv2_3x3_reduce", x))
        x = self.pool2_3x3_s2(x)
        for block in _BLOCKS:
            x = self._block(block, x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.forward_features(x), 1).flatten(1)


def bn_inception(weights: None | str | Path = None) -> BNInception:
    """BN-Inception with random init (None), the port's ImageNet weights ("imagenet") or a local state dict.

    "imagenet" is downloaded once into torch's hub cache ($TORCH_HOME/hub/checkpoints), and torch checks
    it against the sha256 prefix in its file name. A local file must use the port's key names; its
    `last_linear.*` keys, if any, are ignored.
    """
    model = BNInception()
    if weights is None:
        return model
    if weights == "imagenet":
        spec = IMAGENET_WEIGHTS
        try:
            state = torch.hub.load_state_dict_from_url(spec.url, check_hash=True, map_location="cpu",
                                                       file_name=spec.file_name, weights_only=True)
        except (OSError, RuntimeError) as error:
            reason = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
            raise HarnessError(f"cannot fetch the BN-Inception ImageNet weights from {spec.url}: "
                               f"{reason.strip()}") from error
        fit_state_dict(model, state, source=f"weights {spec.url}", backbone="bn_inception",
                       classifier_prefixes=(CLASSIFIER_PREFIX,))
        return model
    load_weights(model, weights, backbone="bn_inception", classifier_prefixes=(CLASSIFIER_PREFIX,))
    return model
