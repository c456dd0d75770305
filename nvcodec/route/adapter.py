"""Micro adapters: INR decoder activations -> a middle layer of a task backbone.

Every adapter is a bilinear resize to the injection point's spatial size followed by a small
conv map; `ADAPTER_KINDS`:

* ``linear``: a 1x1 convolution with bias (the paper's micro adapter);
* ``conv3x3``: a 3x3 convolution with bias;
* ``dw3x3``: a residual depthwise 3x3 on the input channels, then the 1x1 (x + dw(x) -> 1x1);
* ``bottleneck``: the 1x1, then a residual two-layer 1x1 bottleneck (z + W2 relu(W1 z));
* ``patch``: resize to twice the target grid, fold each 2x2 cell into channels (pixel unshuffle,
  the inverse of the INR's PixelShuffle), then the 1x1 (a 2x2 stride-2 patch embedding).

`fit_adapter` initialises the linear part by closed-form ridge regression (the whole 3x3
neighbourhood for ``conv3x3``); residual branches start at zero, so every kind starts at least
as good as the least-squares 1x1. Adam then minimises `CompositeLoss` on the activation plus,
when a `TaskDistill` is given, a distillation loss on the task output through the frozen
backbone tail.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..container import pack_tensors
from ..codec.schema import ADAPTER_KINDS, MAX_ADAPTER_CHANNELS
from ..errors import FormatError, UsageError
from ..inr.quant import dequantize_tensor, quantize_auto
from ..progress import ProgressCallback, emit

__all__ = ["ADAPTER_KINDS", "MicroAdapter", "CompositeLoss", "TaskDistill", "AdapterFit", "fit_adapter",
           "split_frames", "adapter_parameters"]

PATCH = 2
"""``patch`` adapters resize to PATCH x the target grid and fold each PATCH x PATCH cell into channels."""
STORED_DTYPE = "float16"
"""Adapter tensors that are not quantized (biases, and every tensor of a ``bits=None`` adapter) are
stored as float16; fidelity is always measured on the adapter as stored."""
ADAPTER_BITS = 8
"""Weights of 2-D or larger adapter tensors are stored quantized to this many bits, as the INR's
(affine, per output channel where that pays), when it costs no fidelity; see `attach`."""

# Positions used by the closed-form initialisation before positions are subsampled.
LSTSQ_MAX_POSITIONS = 2_000_000
# Elements of (resized input + target) held at once while accumulating normal equations.
_LSTSQ_CHUNK_ELEMENTS = 1 << 23


def _check_size(size: Sequence[int] | None, what: str) -> tuple[int, int] | None:
    if size is None:
        return None
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be (H, W), got {size!r}") from None
    if h < 1 or w < 1:
        raise UsageError(f"{what} must be positive, got {size!r}")
    return h, w


def _check_count(value: object, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise UsageError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def default_hidden(out_channels: int) -> int:
    """Bottleneck width: a quarter of the output channels, clipped to 16..48."""
    return max(16, min(48, out_channels // 4))


def adapter_parameters(kind: str, in_channels: int, out_channels: int, hidden: int | None = None) -> int:
    """Parameter count of an adapter of `kind`, without building it."""
    ci, co = in_channels, out_channels
    if kind == "linear":
        return ci * co + co
    if kind == "conv3x3":
        return 9 * ci * co + co
    if kind == "dw3x3":
        return 9 * ci + ci + ci * co + co
    if kind == "bottleneck":
        h = hidden or default_hidden(co)
        return ci * co + co + 2 * co * h + h + co
    if kind == "patch":
        return PATCH * PATCH * ci * co + co
    raise UsageError(f"unknown adapter kind {kind!r}; kinds: {', '.join(ADAPTER_KINDS)}")


def adapter_shapes(kind: str, ci: int, co: int, h: int) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of an adapter of `kind` (`h`: the bottleneck width), keyed like `state_dict`."""
    k = 3 if kind == "conv3x3" else 1
    c = ci * PATCH * PATCH if kind == "patch" else ci
    shapes = {"conv.weight": (co, c, k, k), "conv.bias": (co,)}
    if kind == "dw3x3":
        shapes.update({"dw.weight": (ci, 1, 3, 3), "dw.bias": (ci,)})
    if kind == "bottleneck":
        shapes.update({"fc1.weight": (h, co, 1, 1), "fc1.bias": (h,), "fc2.weight": (co, h, 1, 1), "fc2.bias": (co,)})
    return shapes


class MicroAdapter(nn.Module):
    """Bilinear resize (align_corners=False) to `out_size`, then the conv map of `kind` (see the module doc).

    The resize is skipped when the input already has `out_size` (or `out_size` is None).
    `conv` is always the main map (1x1, or 3x3 for ``conv3x3``); `hidden` sets the bottleneck width.
    """

    def __init__(self, in_channels: int, out_channels: int, out_size: tuple[int, int] | None = None,
                 kind: str = "linear", hidden: int | None = None) -> None:
        super().__init__()
        if kind not in ADAPTER_KINDS:
            raise UsageError(f"unknown adapter kind {kind!r}; kinds: {', '.join(ADAPTER_KINDS)}")
        self.kind = kind
        self.in_channels = _check_count(in_channels, "in_channels", 1)
        self.out_channels = _check_count(out_channels, "out_channels", 1)
        self.out_size = _check_size(out_size, "out_size")
        k = 3 if kind == "conv3x3" else 1
        c = self.in_channels * PATCH * PATCH if kind == "patch" else self.in_channels
        self.conv = nn.Conv2d(c, self.out_channels, kernel_size=k, padding=k // 2, bias=True)
        self.hidden = 0
        if kind == "dw3x3":
            self.dw = nn.Conv2d(self.in_channels, self.in_channels, 3, padding=1, groups=self.in_channels)
        if kind == "bottleneck":
            self.hidden = _check_count(hidden if hidden is not None else default_hidden(self.out_channels), "hidden", 1)
            self.fc1 = nn.Conv2d(self.out_channels, self.hidden, 1)
            self.fc2 = nn.Conv2d(self.hidden, self.out_channels, 1)
        self.zero_residual()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """PyTorch's default Conv2d initialisation of the main map (optionally seeded); residual branches at zero."""
        fan_in = self.conv.weight[0].numel()
        nn.init.kaiming_uniform_(self.conv.weight, a=math.sqrt(5), generator=generator)
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.uniform_(self.conv.bias, -bound, bound, generator=generator)
        if self.kind == "bottleneck":
            nn.init.kaiming_uniform_(self.fc1.weight, a=math.sqrt(5), generator=generator)
            nn.init.uniform_(self.fc1.bias, -1.0 / math.sqrt(self.out_channels), 1.0 / math.sqrt(self.out_channels),
                             generator=generator)
        self.zero_residual()

    @torch.no_grad()
    def zero_residual(self) -> None:
        """Set the residual branch's last layer to zero, so the adapter equals its main map."""
        for name in ("dw", "fc2"):
            m = getattr(self, name, None)
            if m is not None:
                m.weight.zero_()
                m.bias.zero_()

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        """The adapter's resize step alone: (N, C, h, w) -> (N, C, *out_size)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise UsageError(f"adapter expects (N, {self.in_channels}, h, w), got {tuple(x.shape)}")
        x = x.to(self.conv.weight.dtype)
        size = self.out_size if self.out_size is not None else tuple(x.shape[-2:])
        if self.kind == "patch":
            size = (size[0] * PATCH, size[1] * PATCH)
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return F.pixel_unshuffle(x, PATCH) if self.kind == "patch" else x

    def mapped(self, x: torch.Tensor) -> torch.Tensor:
        """The conv map alone on already resized input."""
        if self.kind == "dw3x3":
            x = x + self.dw(x)
        z = self.conv(x)
        if self.kind == "bottleneck":
            z = z + self.fc2(F.relu(self.fc1(z)))
        return z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, h, w) -> (N, C_out, *out_size)."""
        return self.mapped(self.resize(x))

    def num_parameters(self) -> int:
        """Number of parameters (`adapter_parameters` of this kind and shape)."""
        return sum(p.numel() for p in self.parameters())

    def describe(self) -> dict:
        """kind, channels, hidden width, out_size, parameters."""
        return {"kind": self.kind, "in_channels": self.in_channels, "out_channels": self.out_channels,
                "hidden": self.hidden, "out_size": list(self.out_size) if self.out_size else None,
                "params": self.num_parameters()}

    def stored(self, bits: int | None = None) -> "MicroAdapter":
        """This adapter as the file stores it (`pack`), on the same device, in eval mode."""
        dev = self.conv.weight.device
        arrays, quant = self._stored_arrays(bits)
        values = {k: dequantize_tensor(v, quant[k]) if k in quant else v for k, v in arrays.items()}
        return MicroAdapter.from_arrays(values, self.out_size, self.kind).to(dev).eval()

    def pack(self, meta: dict, bits: int | None = None) -> bytes:
        """The tensor bundle of an adapter section: weights quantized to `bits` (None: float16), the
        rest float16; `meta` gains ``bits`` (16 when unquantized)."""
        arrays, quant = self._stored_arrays(bits)
        return pack_tensors(arrays, quant, meta={**meta, "bits": bits or 16})

    def _stored_arrays(self, bits: int | None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = self.to_arrays(STORED_DTYPE)
        quant: dict[str, Any] = {}
        if bits is not None:
            for name, value in self.to_arrays("float32").items():
                if value.ndim >= 2:
                    arrays[name], quant[name] = quantize_auto(value, bits, 0)
        return arrays, quant

    def to_arrays(self, dtype: str | np.dtype = "float32") -> dict[str, np.ndarray]:
        """Parameters as numpy arrays (float32 or float16), keyed like `state_dict`."""
        dt = np.dtype(dtype)
        if dt not in (np.dtype(np.float32), np.dtype(np.float16)):
            raise UsageError(f"adapter arrays are stored as float32 or float16, not {dt}")
        return {k: v.detach().cpu().float().numpy().astype(dt) for k, v in self.state_dict().items()}

    @classmethod
    def from_arrays(cls, d: Mapping[str, np.ndarray], out_size: tuple[int, int] | None = None,
                    kind: str = "linear") -> "MicroAdapter":
        """Rebuild an adapter of `kind` from `to_arrays` output; FormatError if the arrays do not fit."""
        if kind not in ADAPTER_KINDS:
            raise FormatError(f"unknown adapter kind {kind!r}")
        try:
            w = np.asarray(d["conv.weight"])
            b = np.asarray(d["conv.bias"])
        except KeyError as e:
            raise FormatError(f"adapter arrays lack {e.args[0]!r}") from None
        if kind == "linear" and w.ndim == 2:
            w = w[:, :, None, None]
        if w.ndim != 4 or min(w.shape) < 1 or max(w.shape[:2]) > MAX_ADAPTER_CHANNELS:
            raise FormatError(f"adapter arrays have bad shapes: weight {w.shape}, bias {b.shape}")
        co, ci = int(w.shape[0]), int(w.shape[1])
        if kind == "patch":
            if ci % (PATCH * PATCH):
                raise FormatError(f"patch adapter weight {w.shape} does not fold {PATCH}x{PATCH} cells")
            ci //= PATCH * PATCH
        fc1 = d.get("fc1.weight")
        h = int(np.asarray(fc1).shape[0]) if kind == "bottleneck" and fc1 is not None and np.asarray(fc1).ndim == 4 else 1
        expected = adapter_shapes(kind, ci, co, h)
        arrays = {**d, "conv.weight": w, "conv.bias": b}
        if set(arrays) != set(expected):
            raise FormatError(f"{kind} adapter arrays must be {sorted(expected)}, got {sorted(arrays)}")
        for name, shape in expected.items():
            a = np.asarray(arrays[name])
            if a.shape != shape:
                raise FormatError(f"adapter arrays have bad shapes: {name} {a.shape}, expected {shape}")
            if not np.all(np.isfinite(a)):
                raise FormatError("adapter arrays contain NaN or infinite values")
        out_size = _check_size(out_size, "out_size")
        m = cls(ci, co, out_size, kind=kind, hidden=h if kind == "bottleneck" else None)
        m.load_state_dict({k: torch.from_numpy(np.asarray(arrays[k], dtype=np.float32)) for k in expected})
        return m


class CompositeLoss(nn.Module):
    """w_mse * MSE + w_cos * cosine distance + w_sl1 * SmoothL1 (defaults 1.0, 0.2, 0.1).

    The cosine distance is 1 - cos(pred, target) computed per spatial position over the
    channel vector, averaged over all N*H*W positions. This matches the adapter's structure
    (a 1x1 conv maps each position's channel vector independently) and what the next backbone
    layers respond to (the direction of each position's channel vector decides which
    conv/ReLU units fire), and it weights low-energy positions equally with high-energy ones,
    which MSE does not. A per-sample cosine over the whole flattened map would be dominated by
    the high-energy positions and add little beyond MSE. MSE and SmoothL1 (`beta`) are means
    over elements.
    """

    def __init__(
        self,
        mse: float = 1.0,
        cosine: float = 0.2,
        smooth_l1: float = 0.1,
        *,
        beta: float = 1.0,
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        weights = {"mse": mse, "cosine": cosine, "smooth_l1": smooth_l1}
        for k, v in weights.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                raise UsageError(f"loss weight {k} must be a finite number >= 0, got {v!r}")
        if sum(weights.values()) <= 0:
            raise UsageError("at least one loss weight must be positive")
        if not (beta > 0 and math.isfinite(beta)):
            raise UsageError(f"SmoothL1 beta must be positive, got {beta!r}")
        self.w_mse = float(mse)
        self.w_cosine = float(cosine)
        self.w_smooth_l1 = float(smooth_l1)
        self.beta = float(beta)
        self.eps = float(eps)

    def terms(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The unweighted terms: mse, cosine (distance), smooth_l1."""
        if pred.shape != target.shape or pred.dim() < 2:
            raise UsageError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} must match")
        out = {
            "mse": F.mse_loss(pred, target),
            "smooth_l1": F.smooth_l1_loss(pred, target, beta=self.beta),
        }
        out["cosine"] = 1.0 - F.cosine_similarity(pred, target, dim=1, eps=self.eps).mean()
        return out

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The weighted sum, a scalar tensor."""
        t = self.terms(pred, target)
        return self.w_mse * t["mse"] + self.w_cosine * t["cosine"] + self.w_smooth_l1 * t["smooth_l1"]

    def extra_repr(self) -> str:
        return f"mse={self.w_mse}, cosine={self.w_cosine}, smooth_l1={self.w_smooth_l1}, beta={self.beta}"


@dataclass
class TaskDistill:
    """Distillation of the task output through the frozen backbone tail.

    `tail(act)` runs the rest of the backbone and the head from the injection point (gradients
    flow to `act`); `teacher[i]` is the raw task output for frame i (a tensor with frames first,
    or a dict of such); `loss(student_raw, teacher_raw)` is a differentiable scalar, `weight` its
    weight beside the feature loss; `score(student_raw, teacher_raw)` (higher is better, e.g. the
    task's fidelity) is reported on the validation frames. `context(teacher_raw)`, when given,
    returns extra keyword arguments for the tail from the batch's teacher outputs (a caption
    decoder is teacher-forced on the teacher's tokens).
    """

    tail: Callable[..., Any]
    teacher: Any
    loss: Callable[[Any, Any], torch.Tensor]
    weight: float = 1.0
    score: Callable[[Any, Any], float] | None = None
    context: Callable[[Any], dict[str, Any]] | None = None

    def run_tail(self, act: torch.Tensor, teacher_raw: Any) -> Any:
        """The tail on `act`, with the extra arguments `context` derives from `teacher_raw`."""
        return self.tail(act, **self.context(teacher_raw)) if self.context is not None else self.tail(act)

    def teacher_of(self, idx: list[int], device: torch.device) -> Any:
        """The teacher outputs of frames `idx` on `device`."""
        return _index_raw(self.teacher, idx, device)


def _index_raw(raw: Any, idx: list[int], device: torch.device) -> Any:
    if isinstance(raw, torch.Tensor):
        return raw[idx].to(device=device, dtype=torch.float32)
    if isinstance(raw, dict):
        return {k: _index_raw(v, idx, device) for k, v in raw.items()}
    raise UsageError(f"teacher outputs must be tensors or dicts of tensors, got {type(raw).__name__}")


def _cat_raw(raws: list[Any]) -> Any:
    if isinstance(raws[0], torch.Tensor):
        return torch.cat(raws)
    return {k: torch.cat([r[k] for r in raws]) for k in raws[0]}


@dataclass
class AdapterFit:
    """Result of `fit_adapter`. Histories have one entry per epoch run (`val_history`: the
    `val_metrics` keys per epoch); the adapter holds the weights with the lowest validation
    loss (epoch 0 = the initialisation)."""

    adapter: MicroAdapter
    train_loss: list[float]
    val_loss: list[float]
    val_metrics: dict[str, float]
    epochs_run: int
    seconds: float
    init_val_loss: float = float("nan")
    best_epoch: int = 0
    val_history: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0
    train_indices: list[int] = field(default_factory=list)
    val_indices: list[int] = field(default_factory=list)
    init_metrics: dict[str, float] = field(default_factory=dict)


def split_frames(n: int, val_fraction: float = 0.2) -> tuple[list[int], list[int]]:
    """(train, val) frame indices: round(val_fraction * n) evenly spaced validation frames
    (at least 1, at most n - 1) so validation spans the whole clip."""
    n = _check_count(n, "frame count", 2)
    if not isinstance(val_fraction, (int, float)) or isinstance(val_fraction, bool) or not (0.0 <= val_fraction < 1.0):
        raise UsageError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    n_val = min(max(1, round(val_fraction * n)), n - 1)
    val = sorted({int((k + 0.5) * n / n_val) for k in range(n_val)})
    vs = set(val)
    return [i for i in range(n) if i not in vs], val


def _batches(idx: list[int], batch_size: int) -> list[list[int]]:
    return [idx[s : s + batch_size] for s in range(0, len(idx), batch_size)]


def _take(t: torch.Tensor, idx: list[int], device: torch.device) -> torch.Tensor:
    return t[idx].to(device=device, dtype=torch.float32)


def _positions(adapter: MicroAdapter, x: torch.Tensor) -> torch.Tensor:
    """Resized input as (positions, features): channels (folded cells for patch), or 3x3 neighbourhoods."""
    x = adapter.resize(x)
    if adapter.kind == "conv3x3":
        n, c, h, w = x.shape
        return F.unfold(x, 3, padding=1).transpose(1, 2).reshape(n * h * w, c * 9)
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


@torch.no_grad()
def _lstsq_init(
    adapter: MicroAdapter,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    idx: list[int],
    device: torch.device,
    ridge: float,
    max_positions: int,
    generator: torch.Generator,
) -> None:
    """Set the main conv to the ridge-regression fit of target channels on the resized input
    (channels, or 3x3 neighbourhoods) + bias over the training positions, via float64 normal
    equations; residual branches are set to zero."""
    ci = adapter.conv.weight[0].numel()
    cj = adapter.out_channels
    h, w = targets.shape[-2:]
    per_frame = h * w
    total = per_frame * len(idx)
    keep = min(1.0, max_positions / total)
    chunk = max(1, _LSTSQ_CHUNK_ELEMENTS // (per_frame * (ci + cj)))
    f64 = dict(dtype=torch.float64, device=device)
    sxx = torch.zeros(ci, ci, **f64)
    sxy = torch.zeros(ci, cj, **f64)
    sx = torch.zeros(ci, **f64)
    sy = torch.zeros(cj, **f64)
    count = 0
    for b in _batches(idx, chunk):
        x = _positions(adapter, _take(inputs, b, device))
        y = _take(targets, b, device).permute(0, 2, 3, 1).reshape(-1, cj)
        if keep < 1.0:
            k = max(1, math.ceil(keep * x.shape[0]))
            sel = torch.randperm(x.shape[0], generator=generator)[:k].to(device)
            x, y = x[sel], y[sel]
        x = x.to(torch.float64)
        y = y.to(torch.float64)
        sxx.addmm_(x.T, x)
        sxy.addmm_(x.T, y)
        sx += x.sum(0)
        sy += y.sum(0)
        count += x.shape[0]
    mx, my = sx / count, sy / count
    cxx = sxx - count * torch.outer(mx, mx)
    cxy = sxy - count * torch.outer(mx, my)
    scale = float(torch.diagonal(cxx).mean())
    lam = ridge * scale if scale > 0 else 1.0
    a = cxx + lam * torch.eye(ci, **f64)
    try:
        wmat = torch.linalg.solve(a, cxy)
    except RuntimeError:
        wmat = torch.linalg.pinv(a) @ cxy
    bias = my - mx @ wmat
    if not (torch.isfinite(wmat).all() and torch.isfinite(bias).all()):
        raise UsageError("closed-form adapter initialisation failed (non-finite activations?)")
    adapter.conv.weight.copy_(wmat.T.reshape(adapter.conv.weight.shape).to(adapter.conv.weight.dtype))
    adapter.conv.bias.copy_(bias.to(adapter.conv.bias.dtype))
    adapter.zero_residual()


@torch.no_grad()
def _evaluate(
    adapter: MicroAdapter,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    idx: list[int],
    loss: CompositeLoss,
    batch_size: int,
    device: torch.device,
    task: TaskDistill | None = None,
) -> tuple[float, dict[str, float]]:
    """(loss, metrics) over frames `idx`, accumulated in float64 batch by batch."""
    cj = adapter.out_channels
    f64 = dict(dtype=torch.float64, device=device)
    total_loss = torch.zeros((), **f64)
    task_loss = torch.zeros((), **f64)
    sse = torch.zeros((), **f64)
    sst_raw = torch.zeros((), **f64)
    cos_sum = torch.zeros((), **f64)
    ch_sum = torch.zeros(cj, **f64)
    ch_sq = torch.zeros(cj, **f64)
    positions = 0
    student: list[Any] = []
    for b in _batches(idx, batch_size):
        x = _take(inputs, b, device)
        y = _take(targets, b, device)
        p = adapter(x)
        total_loss += loss(p, y).to(torch.float64) * len(b)
        if task is not None:
            teacher_b = task.teacher_of(b, device)
            raw = task.run_tail(p, teacher_b)
            t = task.loss(raw, teacher_b).to(torch.float64) * len(b)
            task_loss += t
            total_loss += task.weight * t
            student.append(raw)
        d = (p - y).to(torch.float64)
        y64 = y.to(torch.float64)
        sse += (d * d).sum()
        sst_raw += (y64 * y64).sum()
        cos_sum += F.cosine_similarity(p, y, dim=1, eps=loss.eps).to(torch.float64).sum()
        positions += y.shape[0] * y.shape[2] * y.shape[3]
        ch_sum += y64.sum(dim=(0, 2, 3))
        ch_sq += (y64 * y64).sum(dim=(0, 2, 3))
    ss_tot = float((ch_sq - ch_sum * ch_sum / positions).sum())
    sse, sst_raw = float(sse), float(sst_raw)
    metrics = {
        "loss": float(total_loss) / len(idx),
        "mse": sse / (positions * cj),
        "cosine": float(cos_sum) / positions,
        "rel_error": math.sqrt(sse / sst_raw) if sst_raw > 0 else (0.0 if sse == 0 else math.inf),
        "r2": 1.0 - sse / ss_tot if ss_tot > 0 else (1.0 if sse == 0 else -math.inf),
    }
    if task is not None:
        metrics["task_loss"] = float(task_loss) / len(idx)
        if task.score is not None:
            metrics["task_score"] = float(task.score(_cat_raw(student), task.teacher_of(idx, device)))
    return metrics["loss"], metrics


def _check_indices(idx: Sequence[int] | None, n: int, what: str) -> list[int] | None:
    if idx is None:
        return None
    out = [int(i) for i in idx]
    if not out or any(not 0 <= i < n for i in out):
        raise UsageError(f"{what} frame indices must be non-empty and in 0..{n - 1}")
    return out


def fit_adapter(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    kind: str = "linear",
    hidden: int | None = None,
    out_size: tuple[int, int] | None = None,
    val_fraction: float = 0.2,
    train_indices: Sequence[int] | None = None,
    val_indices: Sequence[int] | None = None,
    epochs: int = 30,
    lr: float = 1e-4,
    batch_size: int = 8,
    patience: int | None = 5,
    loss: CompositeLoss | None = None,
    task: TaskDistill | None = None,
    init: str | MicroAdapter = "lstsq",
    ridge: float = 1e-6,
    max_positions: int = LSTSQ_MAX_POSITIONS,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: ProgressCallback | None = None,
) -> AdapterFit:
    """Train a `MicroAdapter` of `kind` mapping `inputs` (N, C_i, h_i, w_i) to `targets` (N, C_j, H_j, W_j).

    Validation frames: `val_indices` (and `train_indices`, default: the rest), else evenly spaced
    frames (`val_fraction`, at least 1). With init="lstsq" the main conv starts at the
    ridge-regression solution over training positions (`ridge` is relative to the mean input
    variance; positions are subsampled above `max_positions`), otherwise at PyTorch's default
    random init (seeded); residual branches start at zero; an adapter given as `init` is copied (its
    kind wins over `kind`). Then Adam (`lr`) minimises `loss`
    (default `CompositeLoss()`) plus, with `task`, ``task.weight`` x the distillation loss through
    the frozen tail, for up to `epochs` epochs of `batch_size` frames, stopping after `patience`
    epochs without a lower validation loss (None: never). The returned adapter has the weights
    with the lowest validation loss, epoch 0 included.
    `val_metrics`: loss, mse, cosine (mean per-position cosine similarity),
    rel_error = ||pred - target|| / ||target||, r2 (1 - SSE / per-channel total variance), and
    with `task` task_loss and task_score. Data stay where they are; batches are moved to `device`.
    """
    t0 = time.perf_counter()
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4:
        raise UsageError(f"inputs must be (N, C, h, w), got {getattr(inputs, 'shape', type(inputs).__name__)}")
    if not isinstance(targets, torch.Tensor) or targets.dim() != 4:
        raise UsageError(f"targets must be (N, C, H, W), got {getattr(targets, 'shape', type(targets).__name__)}")
    if inputs.shape[0] != targets.shape[0]:
        raise UsageError(f"inputs and targets must cover the same frames, got {inputs.shape[0]} and {targets.shape[0]}")
    if min(inputs.shape) < 1 or min(targets.shape) < 1:
        raise UsageError("inputs and targets must not be empty")
    if kind not in ADAPTER_KINDS:
        raise UsageError(f"unknown adapter kind {kind!r}; kinds: {', '.join(ADAPTER_KINDS)}")
    tsize = (int(targets.shape[2]), int(targets.shape[3]))
    out_size = _check_size(out_size, "out_size") or tsize
    if out_size != tsize:
        raise UsageError(f"out_size {out_size} does not match the targets' spatial size {tsize}")
    epochs = _check_count(epochs, "epochs", 0)
    batch_size = _check_count(batch_size, "batch_size", 1)
    if patience is not None:
        patience = _check_count(patience, "patience", 1)
    max_positions = _check_count(max_positions, "max_positions", 1)
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise UsageError(f"lr must be positive, got {lr!r}")
    if not (isinstance(ridge, (int, float)) and math.isfinite(ridge) and ridge >= 0):
        raise UsageError(f"ridge must be >= 0, got {ridge!r}")
    if not isinstance(init, MicroAdapter) and init not in ("lstsq", "random"):
        raise UsageError(f"init must be 'lstsq', 'random' or an adapter to start from, got {init!r}")
    if not (inputs.dtype.is_floating_point and targets.dtype.is_floating_point):
        raise UsageError("inputs and targets must be floating point")
    loss = CompositeLoss() if loss is None else loss
    if not isinstance(loss, CompositeLoss):
        raise UsageError(f"loss must be a CompositeLoss, got {type(loss).__name__}")
    if task is not None and not isinstance(task, TaskDistill):
        raise UsageError(f"task must be a TaskDistill, got {type(task).__name__}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"unknown device {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("device 'cuda' requested but CUDA is not available")
    n = int(inputs.shape[0])
    val_idx = _check_indices(val_indices, n, "validation")
    train_idx = _check_indices(train_indices, n, "training")
    if val_idx is None:
        train_idx, val_idx = split_frames(n, val_fraction)
    elif train_idx is None:
        train_idx = [i for i in range(n) if i not in set(val_idx)] or list(val_idx)

    gen = torch.Generator().manual_seed(int(seed))
    if isinstance(init, MicroAdapter):
        if (init.in_channels, init.out_channels, init.out_size) != (int(inputs.shape[1]), int(targets.shape[1]), out_size):
            raise UsageError("the adapter to start from does not fit these inputs and targets")
        kind, hidden = init.kind, init.hidden or None
    adapter = MicroAdapter(int(inputs.shape[1]), int(targets.shape[1]), out_size, kind=kind, hidden=hidden)
    adapter.reset_parameters(gen)
    adapter.to(dev)
    if isinstance(init, MicroAdapter):
        adapter.load_state_dict(init.state_dict())
    elif init == "lstsq":
        _lstsq_init(adapter, inputs, targets, train_idx, dev, float(ridge), max_positions, gen)

    adapter.eval()
    init_val, init_metrics = _evaluate(adapter, inputs, targets, val_idx, loss, batch_size, dev, task)
    best_val, best_epoch, best_metrics = init_val, 0, init_metrics
    best_state = {k: v.detach().clone() for k, v in adapter.state_dict().items()}
    opt = torch.optim.Adam(adapter.parameters(), lr=float(lr))
    train_hist: list[float] = []
    val_hist: list[float] = []
    metrics_hist: list[dict[str, float]] = []
    since_best = 0
    steps = 0
    for epoch in range(1, epochs + 1):
        adapter.train()
        order = torch.randperm(len(train_idx), generator=gen).tolist()
        running = torch.zeros((), dtype=torch.float64, device=dev)
        for b in _batches([train_idx[i] for i in order], batch_size):
            x = _take(inputs, b, dev)
            y = _take(targets, b, dev)
            opt.zero_grad(set_to_none=True)
            pred = adapter(x)
            value = loss(pred, y)
            if task is not None:
                teacher_b = task.teacher_of(b, dev)
                value = value + task.weight * task.loss(task.run_tail(pred, teacher_b), teacher_b)
            value.backward()
            opt.step()
            running += value.detach().to(torch.float64) * len(b)
            steps += 1
        adapter.eval()
        val, metrics = _evaluate(adapter, inputs, targets, val_idx, loss, batch_size, dev, task)
        train_hist.append(float(running) / len(train_idx))
        val_hist.append(val)
        metrics_hist.append(metrics)
        emit(progress, "adapter", epoch, epochs, val_loss=val, train_loss=train_hist[-1])
        if not math.isfinite(val):
            break
        if val < best_val - 1e-9 * abs(best_val):
            best_val, best_epoch, best_metrics = val, epoch, metrics
            best_state = {k: v.detach().clone() for k, v in adapter.state_dict().items()}
            since_best = 0
        else:
            since_best += 1
            if patience is not None and since_best >= patience:
                break
    adapter.load_state_dict(best_state)
    adapter.eval()
    return AdapterFit(
        adapter=adapter,
        train_loss=train_hist,
        val_loss=val_hist,
        val_metrics=best_metrics,
        epochs_run=len(val_hist),
        seconds=time.perf_counter() - t0,
        init_val_loss=init_val,
        best_epoch=best_epoch,
        val_history=metrics_hist,
        steps=steps,
        train_indices=list(train_idx),
        val_indices=list(val_idx),
        init_metrics=init_metrics,
    )
