"""Micro adapters: INR decoder activations -> a middle layer of a task backbone.

A micro adapter is a bilinear resize to the injection point's spatial size followed by a
1x1 convolution (with bias) for channels; nothing heavier. `fit_adapter` initialises the 1x1
conv by closed-form ridge regression and then refines it with Adam on `CompositeLoss`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import FormatError, UsageError
from ..progress import ProgressCallback, emit

__all__ = ["MicroAdapter", "CompositeLoss", "AdapterFit", "fit_adapter", "split_frames"]

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


class MicroAdapter(nn.Module):
    """Bilinear resize (align_corners=False) to `out_size`, then a 1x1 conv with bias.

    The resize is skipped when the input already has `out_size` (or `out_size` is None).
    """

    def __init__(self, in_channels: int, out_channels: int, out_size: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.in_channels = _check_count(in_channels, "in_channels", 1)
        self.out_channels = _check_count(out_channels, "out_channels", 1)
        self.out_size = _check_size(out_size, "out_size")
        self.conv = nn.Conv2d(self.in_channels, self.out_channels, kernel_size=1, bias=True)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """PyTorch's default Conv2d initialisation, optionally from a seeded generator."""
        nn.init.kaiming_uniform_(self.conv.weight, a=math.sqrt(5), generator=generator)
        bound = 1.0 / math.sqrt(self.in_channels)
        nn.init.uniform_(self.conv.bias, -bound, bound, generator=generator)

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        """The adapter's resize step alone: (N, C, h, w) -> (N, C, *out_size)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise UsageError(f"adapter expects (N, {self.in_channels}, h, w), got {tuple(x.shape)}")
        x = x.to(self.conv.weight.dtype)
        if self.out_size is not None and tuple(x.shape[-2:]) != self.out_size:
            x = F.interpolate(x, size=self.out_size, mode="bilinear", align_corners=False)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, h, w) -> (N, C_out, *out_size)."""
        return self.conv(self.resize(x))

    def num_parameters(self) -> int:
        """C_in * C_out + C_out."""
        return sum(p.numel() for p in self.parameters())

    def to_arrays(self, dtype: str | np.dtype = "float32") -> dict[str, np.ndarray]:
        """Parameters as numpy arrays (float32 or float16), keyed like `state_dict`."""
        dt = np.dtype(dtype)
        if dt not in (np.dtype(np.float32), np.dtype(np.float16)):
            raise UsageError(f"adapter arrays are stored as float32 or float16, not {dt}")
        return {k: v.detach().cpu().float().numpy().astype(dt) for k, v in self.state_dict().items()}

    @classmethod
    def from_arrays(cls, d: Mapping[str, np.ndarray], out_size: tuple[int, int] | None = None) -> "MicroAdapter":
        """Rebuild an adapter from `to_arrays` output; FormatError if the arrays do not fit."""
        try:
            w = np.asarray(d["conv.weight"])
            b = np.asarray(d["conv.bias"])
        except KeyError as e:
            raise FormatError(f"adapter arrays lack {e.args[0]!r}") from None
        if w.ndim == 2:
            w = w[:, :, None, None]
        if w.ndim != 4 or w.shape[2:] != (1, 1) or b.shape != (w.shape[0],) or min(w.shape) < 1:
            raise FormatError(f"adapter arrays have bad shapes: weight {w.shape}, bias {b.shape}")
        if w.dtype.kind != "f" or b.dtype.kind != "f":
            raise FormatError(f"adapter arrays must be floating point, got {w.dtype} and {b.dtype}")
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise FormatError("adapter arrays contain NaN or infinite values")
        out_size = _check_size(out_size, "out_size")
        m = cls(int(w.shape[1]), int(w.shape[0]), out_size)
        with torch.no_grad():
            m.conv.weight.copy_(torch.from_numpy(w.astype(np.float32)))
            m.conv.bias.copy_(torch.from_numpy(b.astype(np.float32)))
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
    """Set the 1x1 conv to the ridge-regression fit of target channels on resized input
    channels (+ bias) over the training positions, via float64 normal equations."""
    ci, cj = adapter.in_channels, adapter.out_channels
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
        x = adapter.resize(_take(inputs, b, device)).permute(0, 2, 3, 1).reshape(-1, ci)
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
    adapter.conv.weight.copy_(wmat.T.reshape(cj, ci, 1, 1).to(adapter.conv.weight.dtype))
    adapter.conv.bias.copy_(bias.to(adapter.conv.bias.dtype))


@torch.no_grad()
def _evaluate(
    adapter: MicroAdapter,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    idx: list[int],
    loss: CompositeLoss,
    batch_size: int,
    device: torch.device,
) -> tuple[float, dict[str, float]]:
    """(loss, metrics) over frames `idx`, accumulated in float64 batch by batch."""
    cj = adapter.out_channels
    f64 = dict(dtype=torch.float64, device=device)
    total_loss = torch.zeros((), **f64)
    sse = torch.zeros((), **f64)
    sst_raw = torch.zeros((), **f64)
    cos_sum = torch.zeros((), **f64)
    ch_sum = torch.zeros(cj, **f64)
    ch_sq = torch.zeros(cj, **f64)
    positions = 0
    for b in _batches(idx, batch_size):
        x = _take(inputs, b, device)
        y = _take(targets, b, device)
        p = adapter(x)
        total_loss += loss(p, y).to(torch.float64) * len(b)
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
    return metrics["loss"], metrics


def fit_adapter(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    out_size: tuple[int, int] | None = None,
    val_fraction: float = 0.2,
    epochs: int = 30,
    lr: float = 1e-4,
    batch_size: int = 8,
    patience: int | None = 5,
    loss: CompositeLoss | None = None,
    init: str = "lstsq",
    ridge: float = 1e-6,
    max_positions: int = LSTSQ_MAX_POSITIONS,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: ProgressCallback | None = None,
) -> AdapterFit:
    """Train a `MicroAdapter` mapping `inputs` (N, C_i, h_i, w_i) to `targets` (N, C_j, H_j, W_j).

    Evenly spaced frames (`val_fraction`, at least 1) are held out for validation. With
    init="lstsq" the 1x1 conv starts at the ridge-regression solution over training positions
    (`ridge` is relative to the mean input variance; positions are subsampled above
    `max_positions`), otherwise at PyTorch's default random init (seeded). Then Adam (`lr`)
    minimises `loss` (default `CompositeLoss()`) for up to `epochs` epochs of `batch_size`
    frames, stopping after `patience` epochs without a lower validation loss (None: never).
    The returned adapter has the weights with the lowest validation loss, epoch 0 included.
    `val_metrics`: loss, mse, cosine (mean per-position cosine similarity),
    rel_error = ||pred - target|| / ||target||, r2 (1 - SSE / per-channel total variance).
    Data stay where they are; batches are moved to `device`.
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
    if init not in ("lstsq", "random"):
        raise UsageError(f"init must be 'lstsq' or 'random', got {init!r}")
    if not (inputs.dtype.is_floating_point and targets.dtype.is_floating_point):
        raise UsageError("inputs and targets must be floating point")
    loss = CompositeLoss() if loss is None else loss
    if not isinstance(loss, CompositeLoss):
        raise UsageError(f"loss must be a CompositeLoss, got {type(loss).__name__}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"unknown device {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("device 'cuda' requested but CUDA is not available")
    train_idx, val_idx = split_frames(int(inputs.shape[0]), val_fraction)

    gen = torch.Generator().manual_seed(int(seed))
    adapter = MicroAdapter(int(inputs.shape[1]), int(targets.shape[1]), out_size)
    adapter.reset_parameters(gen)
    adapter.to(dev)
    if init == "lstsq":
        _lstsq_init(adapter, inputs, targets, train_idx, dev, float(ridge), max_positions, gen)

    adapter.eval()
    init_val, init_metrics = _evaluate(adapter, inputs, targets, val_idx, loss, batch_size, dev)
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
            value = loss(adapter(x), y)
            value.backward()
            opt.step()
            running += value.detach().to(torch.float64) * len(b)
            steps += 1
        adapter.eval()
        val, metrics = _evaluate(adapter, inputs, targets, val_idx, loss, batch_size, dev)
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
        train_indices=train_idx,
        val_indices=val_idx,
    )
