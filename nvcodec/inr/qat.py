"""Quantization-aware training: the straight-through estimator around the stored quantizer.

While QAT is on, every optimisation step runs its forward and backward pass on the *dequantized*
values the file will hold (the same affine rule as `quant.quantize_tensor`, with each tensor's
bits and per-tensor / per-channel choice fixed when QAT starts, `QuantPlan`), and the optimizer
then updates the float weights with that gradient (`WeightSTE`: swap in, step, swap back), which is
the straight-through estimator: d quantize(w) / d w taken as 1. Activations that are stored
(HNeRV's encoder output, the embeddings) go through `fake_quant_ste`, the same rule with a
gradient of 1. The final quantization (`quant.quantize_inr(plan=...)`) uses the plan, so the file
holds exactly the values training saw.

Optional pruning (`QuantPlan.prune`): the smallest-magnitude fraction of each conv weight is set
to zero before quantizing and kept at zero (masks fixed when QAT starts); the zero point of an
affine quantizer represents 0 exactly only by chance, so pruned weights are stored as the level
nearest 0, which the entropy coder makes cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .quant import quantize_auto

TensorKey = tuple[str, int, str]


def fake_quant(x: Tensor, bits: int, axis: int | None) -> Tensor:
    """Dequantized affine (min/max) quantization of `x` at `bits`, per tensor or per channel along `axis`."""
    levels = 2 ** bits - 1
    xf = x.float()
    if axis is None:
        lo, hi = xf.min(), xf.max()
    else:
        dims = tuple(d for d in range(x.ndim) if d != axis)
        lo, hi = xf.amin(dim=dims, keepdim=True), xf.amax(dim=dims, keepdim=True)
    step = (hi - lo) / levels
    scale = torch.where(step > 0, step, torch.ones_like(step))  # 0 also where float32 underflows
    zp = -lo / scale
    q = torch.round(xf / scale + zp).clamp_(0, levels)
    return ((q - zp) * scale).to(x.dtype)


def fake_quant_ste(x: Tensor, bits: int, axis: int | None) -> Tensor:
    """`fake_quant` in the forward pass, identity gradient in the backward pass."""
    return x + (fake_quant(x.detach(), bits, axis) - x).detach()


@dataclass
class QuantPlan:
    """Per-tensor bits and channel axis (None: per tensor), keyed ("block", k, name) / ("head", 0, name),
    plus the embeddings' bits and axis and an optional pruning mask per tensor."""

    bits: dict[TensorKey, int] = field(default_factory=dict)
    axes: dict[TensorKey, int | None] = field(default_factory=dict)
    embed_bits: int = 6
    embed_axis: int | None = 1
    masks: dict[TensorKey, Tensor] = field(default_factory=dict)


def named_tensors(decoder: torch.nn.Module) -> dict[TensorKey, Tensor]:
    """The decoder's stored parameters by key (block parameters, then the head's)."""
    out: dict[TensorKey, Tensor] = {}
    for k in range(decoder.num_blocks):
        for name, p in decoder.blocks[k].named_parameters():
            out[("block", k, name)] = p
    for name, p in decoder.head.named_parameters():
        out[("head", 0, name)] = p
    return out


@torch.no_grad()
def make_plan(decoder: torch.nn.Module, weight_bits: int, embed_bits: int, embeddings: Tensor | None = None,
              bits: dict[TensorKey, int] | None = None, prune: float = 0.0) -> QuantPlan:
    """A QuantPlan for the decoder's current weights: `weight_bits` everywhere unless `bits` says
    otherwise; per-channel or per-tensor by `quant.quantize_auto`'s rule; pruning masks for the
    `prune` fraction of smallest weights of every conv weight with at least 64 values."""
    plan = QuantPlan(embed_bits=embed_bits)
    for key, p in named_tensors(decoder).items():
        b = (bits or {}).get(key, weight_bits)
        plan.bits[key] = b
        plan.axes[key] = quantize_auto(p.detach(), b, 0 if p.ndim >= 2 else None)[1].axis
        if prune > 0.0 and p.ndim == 4 and key[2].endswith("weight") and p.numel() >= 64:
            n = int(prune * p.numel())
            if n > 0:
                thresh = p.detach().abs().flatten().kthvalue(n).values
                plan.masks[key] = (p.detach().abs() > thresh)
    if embeddings is not None:
        plan.embed_axis = quantize_auto(embeddings.detach(), embed_bits, 1 if embeddings.ndim >= 2 else None)[1].axis
    return plan


@torch.no_grad()
def allocate_bits(decoder: torch.nn.Module, optimizer: torch.optim.Optimizer, mean_bits: int,
                  lo: int = 4, hi: int = 10) -> dict[TensorKey, int]:
    """Per-tensor bits for a size-weighted mean of about `mean_bits`, by reverse water-filling.

    Tensor i's output distortion at b bits is modelled as F_i * r_i^2 * 2^(-2b) / 12, with r_i its
    value range and F_i = sum of Adam's running mean of squared gradients over its values (a Fisher
    diagonal the optimizer already holds). Minimising the sum at a fixed total of bits gives
    b_i = mean + 0.5 log2(d_i / D), d_i = F_i r_i^2 / n_i and D their size-weighted geometric mean;
    rounded, clamped to [lo, hi], then nudged so that the total does not exceed mean_bits x values."""
    tensors = named_tensors(decoder)
    logd: dict[TensorKey, float] = {}
    sizes = {k: p.numel() for k, p in tensors.items()}
    for key, p in tensors.items():
        state = optimizer.state.get(p, {})
        v = state.get("exp_avg_sq")
        fisher = float(v.sum()) if v is not None else 0.0
        rng = float(p.max() - p.min()) if p.numel() > 1 else float(p.abs().max())
        d = fisher * rng * rng / max(p.numel(), 1)
        logd[key] = float(torch.log2(torch.tensor(max(d, 1e-30))))
    total = sum(sizes.values())
    mean_logd = sum(logd[k] * sizes[k] for k in tensors) / max(total, 1)
    bits = {k: int(min(hi, max(lo, round(mean_bits + 0.5 * (logd[k] - mean_logd))))) for k in tensors}
    budget = mean_bits * total
    while sum(bits[k] * sizes[k] for k in tensors) > budget:
        candidates = [k for k in tensors if bits[k] > lo]
        if not candidates:
            break
        cheapest = min(candidates, key=lambda k: logd[k] - 2 * bits[k])
        bits[cheapest] -= 1
    return bits


class WeightSTE:
    """Swap the decoder's weights for their quantized values around forward + backward, then back."""

    def __init__(self, decoder: torch.nn.Module, plan: QuantPlan, extra: list[tuple[Tensor, int, int | None]] = ()):
        self.items: list[tuple[Tensor, int, int | None, Tensor | None]] = [
            (p, plan.bits[key], plan.axes[key], plan.masks.get(key)) for key, p in named_tensors(decoder).items()]
        self.items += [(p, b, a, None) for p, b, a in extra]
        self.saved: list[Tensor] = []

    @torch.no_grad()
    def quantize(self) -> None:
        """Keep the float values, load the quantized ones."""
        self.saved = [p.detach().clone() for p, _, _, _ in self.items]
        for p, b, a, m in self.items:
            if m is not None:
                p.mul_(m)
            p.copy_(fake_quant(p, b, a))

    @torch.no_grad()
    def restore(self) -> None:
        """Put the float values back (the gradient stays: it was taken at the quantized values)."""
        for (p, _, _, m), v in zip(self.items, self.saved):
            p.copy_(v)
            if m is not None:
                p.mul_(m)
                if p.grad is not None:
                    p.grad.mul_(m)
        self.saved = []
