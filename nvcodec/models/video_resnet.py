"""Plain-PyTorch I3D R50 and SlowFast R50 (Kinetics-400) with pytorchvideo ``state_dict`` keys.

The module tree mirrors pytorchvideo's ``create_resnet`` / ``create_slowfast`` (hub models
``i3d_r50`` and ``slowfast_r50``): ``blocks.0`` is the stem (``conv``, ``norm``; for SlowFast
``multipathway_blocks.{0,1}`` plus ``multipathway_fusion.conv_fast_to_slow``/``norm``), the
residual stages hold ``res_blocks.N.branch1_conv``/``branch1_norm`` and
``branch2.conv_{a,b,c}``/``norm_{a,b,c}``, and the head is ``proj`` (I3D ``blocks.6``;
SlowFast ``blocks.6`` after the pooling/concatenation ``blocks.5``). Checkpoints saved by
pytorchvideo (``I3D_8x8_R50.pyth``, ``SLOWFAST_8x8_R50.pyth``: a dict with ``model_state``)
load unchanged.

Both take a clip (B, 3, T, H, W). SlowFast's slow pathway sees every `alpha`-th frame of it
(``x[:, :, ::alpha]``, the frames that its fast-to-slow fusion convolutions are aligned with).
Injection points (activations are lists of pathway tensors, slow first):
``stem`` (``blocks.0``), ``res2`` (``blocks.1``), ``res3`` and ``res4`` (the next stages).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nvcodec.errors import UsageError
from nvcodec.progress import ProgressCallback
from nvcodec.models.base import InjectableBackbone
from nvcodec.models.weights import (
    Search,
    WeightsLookup,
    WeightsSource,
    load_checked_state_dict,
    read_source_state_dict,
    strip_prefixes,
    torch_hub_file,
)
from nvcodec.models.geometry import imagenet_geometry
from nvcodec.models.heads import CLASSIFICATION
from nvcodec.models.labels import kinetics400_classes
from nvcodec.models.registry import declare
from nvcodec.models.sampling import ClipSampling

KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)
R50_DEPTHS = (3, 4, 6, 3)
POINTS = ("stem", "res2", "res3", "res4")
I3D_FILE = "I3D_8x8_R50.pyth"
SLOWFAST_FILE = "SLOWFAST_8x8_R50.pyth"

Kernel = tuple[int, int, int]


def _pad(k: Kernel) -> tuple[int, int, int]:
    return (k[0] // 2, k[1] // 2, k[2] // 2)


class BasicStem(nn.Module):
    """pytorchvideo ``ResNetBasicStem``: conv (stride 1,2,2) + BN + ReLU + max pool (1,3,3)/(1,2,2)."""

    def __init__(self, dim_in: int, dim_out: int, kernel: Kernel) -> None:
        super().__init__()
        self.conv = nn.Conv3d(dim_in, dim_out, kernel, stride=(1, 2, 2), padding=_pad(kernel), bias=False)
        self.norm = nn.BatchNorm3d(dim_out)
        self.activation = nn.ReLU()
        self.pool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.activation(self.norm(self.conv(x))))


class BottleneckBlock(nn.Module):
    """pytorchvideo ``BottleneckBlock``: conv_a (temporal kernel) -> conv_b (1,3,3, spatial stride) -> conv_c."""

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, kernel_a: Kernel, stride: int) -> None:
        super().__init__()
        self.conv_a = nn.Conv3d(dim_in, dim_inner, kernel_a, padding=_pad(kernel_a), bias=False)
        self.norm_a = nn.BatchNorm3d(dim_inner)
        self.act_a = nn.ReLU()
        self.conv_b = nn.Conv3d(dim_inner, dim_inner, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1),
                                bias=False)
        self.norm_b = nn.BatchNorm3d(dim_inner)
        self.act_b = nn.ReLU()
        self.conv_c = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.norm_c = nn.BatchNorm3d(dim_out)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act_a(self.norm_a(self.conv_a(x)))
        x = self.act_b(self.norm_b(self.conv_b(x)))
        return self.norm_c(self.conv_c(x))


class ResBlock(nn.Module):
    """pytorchvideo ``ResBlock``: (projection shortcut) + bottleneck, then ReLU."""

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, kernel_a: Kernel, stride: int) -> None:
        super().__init__()
        project = dim_in != dim_out or stride != 1
        self.branch1_conv = nn.Conv3d(dim_in, dim_out, 1, stride=(1, stride, stride), bias=False) if project else None
        self.branch1_norm = nn.BatchNorm3d(dim_out) if project else None
        self.branch2 = BottleneckBlock(dim_in, dim_inner, dim_out, kernel_a, stride)
        self.activation = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.branch1_conv is None else self.branch1_norm(self.branch1_conv(x))
        return self.activation(shortcut + self.branch2(x))


class ResStage(nn.Module):
    """pytorchvideo ``ResStage``: `depth` blocks; the first carries the stride; conv_a kernels repeat cyclically."""

    def __init__(self, depth: int, dim_in: int, dim_inner: int, dim_out: int, kernels_a: Sequence[Kernel],
                 stride: int) -> None:
        super().__init__()
        self.res_blocks = nn.ModuleList(
            ResBlock(dim_in if i == 0 else dim_out, dim_inner, dim_out, kernels_a[i % len(kernels_a)],
                     stride if i == 0 else 1)
            for i in range(depth)
        )

    def forward(self, x: Tensor) -> Tensor:
        for block in self.res_blocks:
            x = block(x)
        return x


class BasicHead(nn.Module):
    """pytorchvideo ``ResNetBasicHead``: (avg pool) -> dropout -> ``proj`` per position -> global average."""

    def __init__(self, dim_in: int, num_classes: int, pool: Kernel | None, dropout: float = 0.5) -> None:
        super().__init__()
        self.pool = nn.AvgPool3d(pool, stride=1) if pool is not None else None
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(dim_in, num_classes)
        self.output_pool = nn.AdaptiveAvgPool3d(1)

    def forward(self, x: Tensor) -> Tensor:
        if self.pool is not None:
            x = self.pool(x)
        x = self.proj(self.dropout(x).permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)
        return self.output_pool(x).flatten(1)


class FuseFastToSlow(nn.Module):
    """pytorchvideo ``FuseFastToSlow``: temporal-stride conv of the fast pathway, concatenated to the slow one."""

    def __init__(self, dim_fast: int, ratio: int, kernel_t: int, alpha: int) -> None:
        super().__init__()
        self.conv_fast_to_slow = nn.Conv3d(dim_fast, dim_fast * ratio, (kernel_t, 1, 1), stride=(alpha, 1, 1),
                                           padding=(kernel_t // 2, 0, 0), bias=False)
        self.norm = nn.BatchNorm3d(dim_fast * ratio)
        self.activation = nn.ReLU()

    def forward(self, x: list[Tensor]) -> list[Tensor]:
        fuse = self.activation(self.norm(self.conv_fast_to_slow(x[1])))
        return [torch.cat([x[0], fuse], 1), x[1]]


class MultiPathWayWithFuse(nn.Module):
    """pytorchvideo ``MultiPathWayWithFuse``: one module per pathway, then the fusion (or none)."""

    def __init__(self, blocks: Sequence[nn.Module], fusion: nn.Module | None) -> None:
        super().__init__()
        self.multipathway_blocks = nn.ModuleList(blocks)
        self.multipathway_fusion = fusion

    def forward(self, x: list[Tensor]) -> list[Tensor]:
        out = [block(t) for block, t in zip(self.multipathway_blocks, x)]
        return self.multipathway_fusion(out) if self.multipathway_fusion is not None else out


class PoolConcatPathway(nn.Module):
    """pytorchvideo ``PoolConcatPathway``: avg-pool each pathway (stride 1) and concatenate channels."""

    def __init__(self, kernels: Sequence[Kernel | None]) -> None:
        super().__init__()
        self.pool = nn.ModuleList(nn.AvgPool3d(k, stride=1) if k is not None else nn.Identity() for k in kernels)

    def forward(self, x: list[Tensor]) -> Tensor:
        return torch.cat([p(t) for p, t in zip(self.pool, x)], 1)


class ClipBackbone(InjectableBackbone):
    """Video backbone cut at `POINTS`; activations are lists of pathway tensors (B, C, T', h, w).

    Subclasses set `pathways` (names, slow first), `clip_len` (input frames T), `blocks`,
    `_point_channels` (point -> channels of the first pathway), `_pathway_channels`,
    `_pathway_stride` (point -> per pathway, input frames per activation time step) and
    `_segment_ops` (spatial (kernel, stride, padding) ops as in 2-D backbones).
    """

    pathways: tuple[str, ...]
    clip_len: int
    blocks: nn.ModuleList
    _pathway_channels: dict[str, list[int]]
    _pathway_stride: dict[str, list[int]]
    _segment_blocks: dict[str, list[int]]
    _tail_blocks: list[int]

    def _segment(self, point: str, x: Any) -> list[Tensor]:
        x = self._enter(x) if point == self.injection_points[0] else x
        for i in self._segment_blocks[point]:
            x = self.blocks[i](x)
        return x

    def _enter(self, clip: Tensor) -> Any:
        raise NotImplementedError

    def _tail(self, act: list[Tensor], **ctx: Any) -> Tensor:
        x: Any = act
        for i in self._tail_blocks:
            x = self.blocks[i](x)
        return x

    def pathway_channels(self, point: str) -> list[int]:
        """Channels of each pathway's activation at `point`."""
        self._index(point)
        return list(self._pathway_channels[point])

    def pathway_positions(self, point: str) -> list[list[int]]:
        """Per pathway, the clip positions (0..clip_len-1) its activation time steps at `point` stand for."""
        self._index(point)
        return [list(range(0, self.clip_len, s)) for s in self._pathway_stride[point]]


class I3D(ClipBackbone):
    """I3D ResNet (pytorchvideo ``create_resnet`` with the ``i3d_r50`` settings); defaults give I3D R50 8x8.

    ``blocks``: 0 stem (5,7,7), 1-5 = res2, temporal max pool (2,1,1), res3, res4, res5; 6 head.
    """

    pathways = ("main",)
    injection_points = list(POINTS)

    def __init__(self, depths: Sequence[int] = R50_DEPTHS, width: int = 64, num_classes: int = 400,
                 clip_len: int = 8, head_pool: Kernel | None = (4, 7, 7)) -> None:
        super().__init__()
        if len(depths) != 4 or min(depths) < 1 or width < 1 or num_classes < 1 or clip_len < 2 or clip_len % 2:
            raise UsageError(f"bad I3D config: depths={tuple(depths)}, width={width}, clip_len={clip_len}")
        self.clip_len = int(clip_len)
        kernels = (((3, 1, 1),), ((3, 1, 1), (1, 1, 1)), ((3, 1, 1), (1, 1, 1)), ((1, 1, 1), (3, 1, 1)))
        blocks: list[nn.Module] = [BasicStem(3, width, (5, 7, 7))]
        dim_in, dim_out = width, width * 4
        for s, depth in enumerate(depths):
            blocks.append(ResStage(depth, dim_in, dim_out // 4, dim_out, kernels[s], 1 if s == 0 else 2))
            if s == 0:
                blocks.append(nn.MaxPool3d((2, 1, 1), stride=(2, 1, 1)))
            dim_in, dim_out = dim_out, dim_out * 2
        blocks.append(BasicHead(dim_in, num_classes, head_pool))
        self.blocks = nn.ModuleList(blocks)
        self._segment_blocks = {"stem": [0], "res2": [1], "res3": [2, 3], "res4": [4]}
        self._tail_blocks = [5, 6]
        self._point_channels = {"stem": width, "res2": width * 4, "res3": width * 8, "res4": width * 16}
        self._pathway_channels = {p: [c] for p, c in self._point_channels.items()}
        self._pathway_stride = {"stem": [1], "res2": [1], "res3": [2], "res4": [2]}
        self._segment_ops = {"stem": [(7, 2, 3), (3, 2, 1)], "res2": [], "res3": [(3, 2, 1)], "res4": [(3, 2, 1)]}
        _init_weights(self)

    def _enter(self, clip: Tensor) -> Tensor:
        return clip

    def _segment(self, point: str, x: Any) -> list[Tensor]:
        x = x[0] if isinstance(x, list) else x
        for i in self._segment_blocks[point]:
            x = self.blocks[i](x)
        return [x]

    def _tail(self, act: list[Tensor], **ctx: Any) -> Tensor:
        return self.blocks[6](self.blocks[5](act[0]))


class SlowFast(ClipBackbone):
    """SlowFast ResNet (pytorchvideo ``create_slowfast``, ``slowfast_r50`` settings); defaults give SlowFast R50 8x8.

    The input clip holds the fast pathway's frames (32); the slow pathway takes every
    `alpha`-th one (8). ``blocks``: 0 stems + fusion, 1-4 stages (fusion after 1-3), 5 pool and
    concatenation, 6 head.
    """

    pathways = ("slow", "fast")
    injection_points = list(POINTS)

    def __init__(self, depths: Sequence[int] = R50_DEPTHS, width: int = 64, num_classes: int = 400,
                 clip_len: int = 32, alpha: int = 4, beta_inv: int = 8, fusion_ratio: int = 2,
                 fusion_kernel: int = 7, head_pool: tuple[Kernel, Kernel] | None = ((8, 7, 7), (32, 7, 7))) -> None:
        super().__init__()
        if len(depths) != 4 or min(depths) < 1 or width < beta_inv or alpha < 1 or clip_len % alpha:
            raise UsageError(f"bad SlowFast config: depths={tuple(depths)}, width={width}, alpha={alpha}, "
                             f"clip_len={clip_len}")
        self.clip_len, self.alpha = int(clip_len), int(alpha)
        fast_w = width // beta_inv
        slow_k = ((1, 1, 1), (1, 1, 1), (3, 1, 1), (3, 1, 1))
        blocks: list[nn.Module] = [MultiPathWayWithFuse(
            [BasicStem(3, width, (1, 7, 7)), BasicStem(3, fast_w, (5, 7, 7))],
            FuseFastToSlow(fast_w, fusion_ratio, fusion_kernel, alpha))]
        dim_in, dim_out = width, width * 4
        for s, depth in enumerate(depths):
            stride = 1 if s == 0 else 2
            slow = ResStage(depth, dim_in + dim_in * fusion_ratio // beta_inv, dim_out // 4, dim_out, (slow_k[s],),
                            stride)
            fast = ResStage(depth, dim_in // beta_inv, dim_out // 4 // beta_inv, dim_out // beta_inv, ((3, 1, 1),),
                            stride)
            fusion = FuseFastToSlow(dim_out // beta_inv, fusion_ratio, fusion_kernel, alpha) if s < 3 else None
            blocks.append(MultiPathWayWithFuse([slow, fast], fusion))
            dim_in, dim_out = dim_out, dim_out * 2
        blocks.append(PoolConcatPathway(head_pool or (None, None)))
        blocks.append(BasicHead(dim_in + dim_in // beta_inv, num_classes, None))
        self.blocks = nn.ModuleList(blocks)
        self._segment_blocks = {"stem": [0], "res2": [1], "res3": [2], "res4": [3]}
        self._tail_blocks = [4, 5, 6]
        fused = fast_w * fusion_ratio
        self._pathway_channels = {
            p: [c + c * fusion_ratio // beta_inv, c // beta_inv]
            for p, c in {"stem": width, "res2": width * 4, "res3": width * 8, "res4": width * 16}.items()}
        self._pathway_channels["stem"] = [width + fused, fast_w]
        self._point_channels = {p: c[0] for p, c in self._pathway_channels.items()}
        self._pathway_stride = {p: [alpha, 1] for p in POINTS}
        self._segment_ops = {"stem": [(7, 2, 3), (3, 2, 1)], "res2": [], "res3": [(3, 2, 1)], "res4": [(3, 2, 1)]}
        _init_weights(self)

    def _enter(self, clip: Tensor) -> list[Tensor]:
        return [clip[:, :, :: self.alpha], clip]


def _init_weights(model: nn.Module) -> None:
    """pytorchvideo's ``init_net_weights`` style: Kaiming convs, unit BN, small normal head."""
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)


def i3d_r50() -> I3D:
    """I3D R50 8x8 for Kinetics-400 (random initialization)."""
    return I3D()


def slowfast_r50() -> SlowFast:
    """SlowFast R50 8x8 for Kinetics-400 (random initialization)."""
    return SlowFast()


def tiny_i3d() -> I3D:
    """Test-sized I3D: one block per stage, width 8, 10 classes, 4 input frames."""
    return I3D((1, 1, 1, 1), 8, 10, clip_len=4, head_pool=None)


def tiny_slowfast() -> SlowFast:
    """Test-sized SlowFast: one block per stage, width 8 (fast 2), 10 classes, 8 fast / 2 slow frames."""
    return SlowFast((1, 1, 1, 1), 8, 10, clip_len=8, alpha=4, beta_inv=4, head_pool=((2, 1, 1), (8, 1, 1)))


def _build(model: ClipBackbone, source: WeightsSource, device: torch.device | str) -> ClipBackbone:
    if not source.random:
        sd = read_source_state_dict(source)
        model_keys = set(model.state_dict())
        sd = strip_prefixes(sd, model_keys, ("module.", "model."))
        load_checked_state_dict(model, sd, what=source.describe())
    model.requires_grad_(False)
    return model.to(device).eval()


def build_i3d(source: WeightsSource, device: torch.device | str = "cpu", tiny: bool = False) -> ClipBackbone:
    """I3D R50 (or the tiny test model) loaded from `source` (random sources stay random)."""
    return _build(tiny_i3d() if tiny else i3d_r50(), source, device)


def build_slowfast(source: WeightsSource, device: torch.device | str = "cpu", tiny: bool = False) -> ClipBackbone:
    """SlowFast R50 (or the tiny test model) loaded from `source` (random sources stay random)."""
    return _build(tiny_slowfast() if tiny else slowfast_r50(), source, device)


def _hub_locator(task: str, name: str) -> Any:
    def locate(search: Search, cache_dirs: Sequence[Path] | None, offline: str | None,
               progress: ProgressCallback | None) -> WeightsSource | None:
        return torch_hub_file(task, [name], name, search, cache_dirs)

    locate.__doc__ = f"torch hub cache ``{name}`` (pytorchvideo's Kinetics-400 checkpoint); never downloaded."
    return locate


I3D_WEIGHTS = WeightsLookup(_hub_locator("i3d_r50", I3D_FILE))
SLOWFAST_WEIGHTS = WeightsLookup(_hub_locator("slowfast_r50", SLOWFAST_FILE))


KINETICS_SCHEMA = {
    "per_window": "list of the top-k actions, best first (k = top_k, default 5), for each clip window",
    "fields": {
        "label": "str: Kinetics-400 action name",
        "index": "int: class index 0..399",
        "score": "float: softmax probability",
    },
}


def _declare_clip_task(name: str, description: str, backbone: str, builder: Any, weights: WeightsLookup,
                       sampling: ClipSampling, rank: int, docs: tuple[str, str, str]) -> None:
    declare(name, head=CLASSIFICATION, builder=builder, rank=rank, description=description, backbone=backbone,
            injection_points=POINTS, mean=KINETICS_MEAN, std=KINETICS_STD, labels=kinetics400_classes(),
            output_schema=KINETICS_SCHEMA, geometry=lambda hw: imagenet_geometry(hw, 256, 256),
            tiny_geometry=lambda hw: imagenet_geometry(hw, 72, 64), weights=weights, clip=sampling, docs=docs)


_declare_clip_task(
    "slowfast_r50", "Kinetics-400 action recognition with SlowFast R50 8x8 (pytorchvideo weights); "
    "top-5 per clip window of 32 frames at stride 2 (slow pathway: every 4th)", "slowfast-r50-8x8",
    build_slowfast, SLOWFAST_WEIGHTS, ClipSampling(32, 2, tiny_frames=8, tiny_rate=1), 6,
    ("Kinetics-400 top-5 per clip window", "plain-PyTorch SlowFast R50 8x8 with pytorchvideo `state_dict` keys; "
     "32 frames at stride 2, slow pathway every 4th",
     "stem (`blocks.0`), res2, res3, res4 (`blocks.1..3`); slow and fast pathways each get an adapter"))
_declare_clip_task(
    "i3d_r50", "Kinetics-400 action recognition with I3D R50 8x8 (pytorchvideo weights); "
    "top-5 per clip window of 8 frames at stride 8", "i3d-r50-8x8",
    build_i3d, I3D_WEIGHTS, ClipSampling(8, 8, tiny_frames=4, tiny_rate=2), 7,
    ("Kinetics-400 top-5 per clip window", "plain-PyTorch I3D R50 8x8 with pytorchvideo `state_dict` keys; "
     "8 frames at stride 8", "stem (`blocks.0`), res2 (`blocks.1`), res3 (`blocks.3`), res4 (`blocks.4`)"))
