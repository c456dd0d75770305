"""FLOP counting for task inference paths (INR decode + adapter + backbone tail vs. full backbone).

`count_flops` runs a function under `torch.utils.flop_counter.FlopCounterMode`, which counts
matrix products and convolutions (aten mm/addmm/bmm/baddbmm, convolution and their backward
ops, scaled-dot-product attention) with the FLOPs = 2 x multiply-accumulates convention:
a conv is 2 * N * C_out * H_out * W_out * (C_in / groups) * k_h * k_w, a linear layer
2 * batch * in * out. Biases, normalisation, activations, pooling, bilinear resizing and other
elementwise ops are not counted. The analytic helpers here use the same convention and serve
as an independent check.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from torch.utils.flop_counter import FlopCounterMode

from ..errors import UsageError

__all__ = ["count_flops", "conv_flops", "conv_output_size", "linear_flops", "matmul_flops", "gflops"]


def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, int]:
    """Call `fn(*args, **kwargs)` and return (its result, FLOPs counted by FlopCounterMode).

    Counts whatever runs inside `fn`, including backward passes if `fn` runs them; wrap the
    call in `torch.no_grad()` yourself for inference.
    """
    mode = FlopCounterMode(display=False)
    with mode:
        result = fn(*args, **kwargs)
    return result, int(mode.get_total_flops())


def _pair(v: int | Sequence[int], what: str) -> tuple[int, int]:
    if isinstance(v, int) and not isinstance(v, bool):
        return v, v
    try:
        a, b = (int(x) for x in v)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be an int or a pair of ints, got {v!r}") from None
    return a, b


def conv_output_size(
    size: int | Sequence[int],
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
) -> tuple[int, int]:
    """Spatial output size (H_out, W_out) of a 2-D conv or pooling window."""
    (h, w), (kh, kw) = _pair(size, "size"), _pair(kernel_size, "kernel_size")
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    out = ((h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1)
    if min(out) < 1:
        raise UsageError(f"conv of kernel {kernel_size} does not fit input size {size}")
    return out


def conv_flops(
    batch: int,
    in_channels: int,
    out_channels: int,
    out_size: int | Sequence[int],
    kernel_size: int | Sequence[int] = 1,
    groups: int = 1,
) -> int:
    """Analytic FLOPs of a 2-D conv: 2 * N * C_out * H_out * W_out * (C_in / groups) * k_h * k_w.

    A 1x1 conv is 2 * C_in * C_out * H * W * N. The bias is not counted.
    """
    (h, w), (kh, kw) = _pair(out_size, "out_size"), _pair(kernel_size, "kernel_size")
    if groups < 1 or in_channels % groups or out_channels % groups:
        raise UsageError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
    return 2 * batch * out_channels * h * w * (in_channels // groups) * kh * kw


def linear_flops(batch: int, in_features: int, out_features: int) -> int:
    """Analytic FLOPs of a linear layer: 2 * batch * in * out (bias not counted)."""
    return 2 * batch * in_features * out_features


def matmul_flops(m: int, k: int, n: int) -> int:
    """Analytic FLOPs of an (m, k) @ (k, n) product: 2 * m * k * n."""
    return 2 * m * k * n


def gflops(n: int | float) -> float:
    """FLOPs -> GFLOPs (1e9)."""
    return float(n) / 1e9
