"""Common interface of task backbones that accept activations at a middle layer.

A backbone is cut into an ordered list of segments. Segment ``i`` ends at injection
point ``injection_points[i]``; everything after the last point (the rest of the
backbone plus the task head) is the *tail*. ``forward_to`` runs segments up to a
point, ``forward_from`` runs the remaining segments and the tail, and ``forward`` runs
all of them, so ``forward_from(forward_to(x, p), p)`` performs exactly the same
operations as ``forward(x)`` for every point ``p``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from nvcodec.errors import UsageError

ConvOp = tuple[int, int, int]
"""(kernel, stride, padding) of one size-changing conv or pool on the main path."""


def conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """Output length of a convolution/pooling along one axis (PyTorch floor arithmetic)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


class InjectableBackbone(nn.Module):
    """Base class: a task backbone with named injection points (ordered shallow to deep).

    Subclasses set ``injection_points``, ``_point_channels`` (point -> channels) and
    ``_segment_ops`` (point -> size-changing ops of the segment that ends there), and
    implement ``_segment(point, x)`` and ``_tail(act, **ctx)``.
    """

    injection_points: list[str]
    _point_channels: dict[str, int]
    _segment_ops: dict[str, list[ConvOp]]

    def _segment(self, point: str, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _tail(self, act: Tensor, **ctx: Any) -> Any:
        raise NotImplementedError

    def _index(self, point: str) -> int:
        try:
            return self.injection_points.index(point)
        except ValueError:
            raise UsageError(
                f"unknown injection point {point!r} for {type(self).__name__}; "
                f"known points: {', '.join(self.injection_points)}"
            ) from None

    def forward_to(self, x: Tensor, point: str) -> Tensor:
        """Run normalized pixels (N,3,H,W) up to `point`; returns the activation there."""
        end = self._index(point)
        for name in self.injection_points[: end + 1]:
            x = self._segment(name, x)
        return x

    def forward_from(self, act: Tensor, point: str, **ctx: Any) -> Any:
        """Run the rest of the backbone and the head from the activation at `point`."""
        start = self._index(point)
        for name in self.injection_points[start + 1 :]:
            act = self._segment(name, act)
        return self._tail(act, **ctx)

    def forward_all(self, x: Tensor, **ctx: Any) -> tuple[dict[str, Tensor], Any]:
        """Full pixel path keeping the activation at every injection point: (activations, raw output)."""
        acts: dict[str, Tensor] = {}
        for name in self.injection_points:
            x = self._segment(name, x)
            acts[name] = x
        return acts, self._tail(x, **ctx)

    def forward(self, x: Tensor, **ctx: Any) -> Any:
        """Full pixel path: normalized pixels (N,3,H,W) -> raw task output."""
        for name in self.injection_points:
            x = self._segment(name, x)
        return self._tail(x, **ctx)

    def point_channels(self, point: str) -> int:
        """Number of channels of the activation at `point`."""
        self._index(point)
        return self._point_channels[point]

    def point_stride(self, point: str) -> int:
        """Total stride of `point` relative to the network input."""
        end = self._index(point)
        stride = 1
        for name in self.injection_points[: end + 1]:
            for _, s, _ in self._segment_ops[name]:
                stride *= s
        return stride

    def point_size(self, point: str, input_hw: tuple[int, int]) -> tuple[int, int]:
        """Exact spatial size (h, w) of the activation at `point` for an input of size `input_hw`."""
        end = self._index(point)
        h, w = int(input_hw[0]), int(input_hw[1])
        if h < 1 or w < 1:
            raise UsageError(f"input size must be positive, got {input_hw}")
        for name in self.injection_points[: end + 1]:
            for k, s, p in self._segment_ops[name]:
                h, w = conv_out(h, k, s, p), conv_out(w, k, s, p)
        if h < 1 or w < 1:
            raise UsageError(f"input {input_hw} is too small to reach injection point {point!r}")
        return h, w

    def set_decoding(self, beams: int = 1) -> None:
        """Decoding of generative heads (1: greedy, more: beam search); other backbones ignore it."""

    def num_parameters(self) -> int:
        """Total number of parameters (backbone tail and head included)."""
        return sum(p.numel() for p in self.parameters())

    @property
    def device(self) -> torch.device:
        """Device of the first parameter (CPU for a parameterless module)."""
        for p in self.parameters():
            return p.device
        return torch.device("cpu")


def _is_batchnorm(m: nn.Module) -> bool:
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return True
    return isinstance(getattr(m, "running_mean", None), Tensor) and isinstance(getattr(m, "running_var", None), Tensor)


@torch.no_grad()
def calibrate_bn(model: nn.Module, batches: Iterable[Tensor], *, device: torch.device | str | None = None) -> int:
    """Re-estimate BatchNorm running statistics from input batches; returns the number of BN layers.

    Each batch is what ``model(batch)`` takes (normalized pixels for a backbone). While
    calibrating, every BN layer normalizes with the statistics of the current batch (as in
    training mode) and the running mean/variance become the average over batches of the
    batch mean and unbiased batch variance (PyTorch's cumulative ``momentum=None`` rule).
    Works for ``nn.BatchNorm*`` and frozen BN modules that only hold running-stat buffers
    (e.g. DETR's). Other layers run in eval mode; the model's train/eval mode is restored.
    """
    bns = [m for m in model.modules() if _is_batchnorm(m)]
    if not bns:
        return 0
    sums: dict[int, list[Tensor | int]] = {}

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor:
        x = inputs[0]
        dims = [d for d in range(x.dim()) if d != 1]
        n = x.numel() // x.shape[1]
        xf = x.float()
        mean = xf.mean(dim=dims)
        var = xf.var(dim=dims, unbiased=False)
        acc = sums.setdefault(id(module), [torch.zeros_like(mean), torch.zeros_like(var), 0])
        acc[0] = acc[0] + mean
        acc[1] = acc[1] + (var * n / max(n - 1, 1))
        acc[2] = acc[2] + 1
        shape = [1, -1] + [1] * (x.dim() - 2)
        eps = float(getattr(module, "eps", 1e-5))
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + eps)
        weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
        if isinstance(weight, Tensor):
            y = y * weight.float().view(shape)
        if isinstance(bias, Tensor):
            y = y + bias.float().view(shape)
        return y.to(output.dtype)

    was_training = model.training
    model.eval()
    handles = [m.register_forward_hook(hook) for m in bns]
    try:
        seen = 0
        for batch in batches:
            if device is not None:
                batch = batch.to(device)
            model(batch)
            seen += 1
    finally:
        for h in handles:
            h.remove()
    for m in bns:
        acc = sums.get(id(m))
        if acc is None:
            continue
        m.running_mean.copy_((acc[0] / acc[2]).to(m.running_mean.dtype))
        m.running_var.copy_((acc[1] / acc[2]).to(m.running_var.dtype))
        if isinstance(getattr(m, "num_batches_tracked", None), Tensor):
            m.num_batches_tracked.fill_(int(acc[2]))
    model.train(was_training)
    return len(bns) if seen else 0
