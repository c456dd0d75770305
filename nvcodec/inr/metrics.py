"""Image quality metrics in torch: PSNR, SSIM, MS-SSIM, and nvcodec's one PSNR definition.

PSNR definition (used by encode, info, view --compare, tune and bench alike): on RGB values in
[0, 1] (8-bit values / 255), peak 1. The headline `psnr` is the *pooled* PSNR, 10 log10(1 / MSE)
of the MSE over all frames, pixels and channels; `psnr_frame_mean` (the mean over frames of each
frame's PSNR, frames capped at PSNR_CAP dB) and `psnr_min` (the worst frame) stand beside it.
Segments and batches pool by MSE weighted by frame count (`pool_quality`), never by averaging PSNRs.

Inputs are frames (N, C, H, W) or (N, H, W, C), or a single frame without N; channels-last is
detected when the last dim is 1 or 3 and dim -3 is not. uint8 inputs are scaled by 1/255, float
inputs are taken as [0, 1]. Every metric returns a float32 tensor: over all frames (PSNR pooled
by MSE, SSIM and MS-SSIM the mean over frames), or per frame (shape (N,)) with `per_frame=True`.

SSIM uses an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, 'valid' filtering, averaged over
channels; frames smaller than the window use an odd window equal to the smaller side.
MS-SSIM uses the standard 5 scales and weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333) with 2x2 average
pooling; small frames use fewer scales (as many as keep the coarsest side >= the window) with the
remaining weights renormalized; negative contrast terms are clamped at 0. SSIM and MS-SSIM are
differentiable (used by the "l1+ssim" training loss).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import UsageError

MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def to_nchw_float(x: Tensor) -> Tensor:
    """Frames as float (N, C, H, W) in [0, 1] (see the module docstring for accepted layouts)."""
    if not isinstance(x, Tensor):
        raise UsageError("metrics expect torch tensors")
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise UsageError(f"expected frames (N, C, H, W) or (N, H, W, C), got shape {tuple(x.shape)}")
    if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    return x.float()


def _pair(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    a, b = to_nchw_float(a), to_nchw_float(b)
    if a.shape != b.shape:
        raise UsageError(f"shape mismatch: {tuple(a.shape)} vs {tuple(b.shape)}")
    return a, b.to(a.device)


def _reduce(v: Tensor, per_frame: bool) -> Tensor:
    return v if per_frame else v.mean()


def psnr(a: Tensor, b: Tensor, *, per_frame: bool = False) -> Tensor:
    """PSNR in dB (peak 1.0 on [0, 1] values): pooled over all frames, or per frame; identical
    frames give +inf."""
    a, b = _pair(a, b)
    mse = (a - b).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / (mse if per_frame else mse.mean()))


def _gauss(size: int, sigma: float, device: torch.device) -> Tensor:
    c = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-(c ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _window(h: int, w: int, win: int) -> int:
    size = min(win, h, w)
    return size if size % 2 == 1 else size - 1


def _filter(x: Tensor, g: Tensor) -> Tensor:
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _ssim_cs(a: Tensor, b: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_a, mu_b = _filter(a, g), _filter(b, g)
    saa = _filter(a * a, g) - mu_a ** 2
    sbb = _filter(b * b, g) - mu_b ** 2
    sab = _filter(a * b, g) - mu_a * mu_b
    cs = (2 * sab + c2) / (saa + sbb + c2)
    lum = (2 * mu_a * mu_b + c1) / (mu_a ** 2 + mu_b ** 2 + c1)
    return (lum * cs).flatten(1).mean(1), cs.flatten(1).mean(1)


def ssim(a: Tensor, b: Tensor, *, per_frame: bool = False, win_size: int = 11, sigma: float = 1.5) -> Tensor:
    """Structural similarity (Gaussian window), mean over channels and positions."""
    a, b = _pair(a, b)
    size = _window(a.shape[-2], a.shape[-1], win_size)
    g = _gauss(size, sigma * size / win_size, a.device)
    return _reduce(_ssim_cs(a, b, g)[0], per_frame)


def ms_ssim(a: Tensor, b: Tensor, *, per_frame: bool = False, win_size: int = 11, sigma: float = 1.5) -> Tensor:
    """Multi-scale SSIM; fewer scales for small frames (weights renormalized)."""
    a, b = _pair(a, b)
    short = min(a.shape[-2], a.shape[-1])
    scales = 1
    while scales < len(MS_WEIGHTS) and short // 2 ** scales >= win_size:
        scales += 1
    weights = torch.tensor(MS_WEIGHTS[:scales], device=a.device)
    weights = weights / weights.sum()
    size = _window(a.shape[-2], a.shape[-1], win_size)
    g = _gauss(size, sigma * size / win_size, a.device)
    vals = []
    for i in range(scales):
        s, cs = _ssim_cs(a, b, g)
        if i < scales - 1:
            vals.append(cs.clamp(min=0.0))
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
        else:
            vals.append(s.clamp(min=0.0))
    stacked = torch.stack(vals, dim=1)
    out = torch.prod(stacked ** weights[None, :], dim=1)
    return _reduce(out, per_frame)


PSNR_CAP = 100.0


def mse_to_psnr(mse: float) -> float:
    """PSNR in dB of a mean squared error on [0, 1] values."""
    return float("inf") if mse <= 0 else 10.0 * math.log10(1.0 / mse)


def frame_mse(a: Tensor, b: Tensor) -> Tensor:
    """Per-frame MSE (N,) over pixels and channels, float64 on the CPU."""
    a, b = _pair(a, b)
    return (a.double() - b.double()).pow(2).flatten(1).mean(1).cpu()


def frame_psnrs(mse: Tensor | list[float]) -> list[float]:
    """Each frame's PSNR from its MSE, capped at PSNR_CAP dB (identical frames)."""
    return [min(mse_to_psnr(float(v)), PSNR_CAP) for v in torch.as_tensor(mse, dtype=torch.float64).flatten()]


def quality_from_mse(mse: Tensor | list[float]) -> dict[str, float]:
    """The PSNR report of per-frame MSEs (equal-size frames): psnr (pooled), psnr_frame_mean,
    psnr_min, mse (pooled) and frames."""
    m = torch.as_tensor(mse, dtype=torch.float64).flatten()
    if m.numel() == 0:
        raise UsageError("no frames to measure")
    per = frame_psnrs(m)
    pooled = float(m.mean())
    return {"psnr": min(mse_to_psnr(pooled), PSNR_CAP), "psnr_frame_mean": sum(per) / len(per),
            "psnr_min": min(per), "mse": pooled, "frames": int(m.numel())}


def pool_quality(parts: list[dict]) -> dict[str, float]:
    """Pool `quality_from_mse` reports of disjoint frame sets (e.g. segments), weighted by frames."""
    if not parts:
        raise UsageError("no frames to measure")
    n = sum(int(p["frames"]) for p in parts)
    mse = sum(float(p["mse"]) * int(p["frames"]) for p in parts) / n
    return {"psnr": min(mse_to_psnr(mse), PSNR_CAP),
            "psnr_frame_mean": sum(float(p["psnr_frame_mean"]) * int(p["frames"]) for p in parts) / n,
            "psnr_min": min(float(p["psnr_min"]) for p in parts), "mse": mse, "frames": n}
