"""Clip tasks: tasks whose unit is a window of video frames rather than one frame.

A clip task (``TaskSpec.clip``) takes `frames` frames sampled every `rate` video frames, so a
window spans ``frames * rate`` video frames by default. `plan_windows` lays windows over a
frame range (``--window`` / ``--stride`` in video frames) and `union_frames` gives the frames
they need, each decoded once however many windows share it.

Injection: the backbone's activation at a point is a list of pathway tensors (B, C, T', h, w).
A `ClipAdapter` holds one 2-D `MicroAdapter` per pathway: each maps an INR block's per-frame
activations (N = T, C, h, w) to that pathway's per-frame channels, and the frames each pathway's
time steps stand for (`ClipBackbone.pathway_positions`) are stacked into (B, C', T', h', w').
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..container import pack_tensors
from ..errors import UsageError
from ..models.sampling import ClipSampling  # noqa: F401 - re-exported: declared with the task
from .adapter import MicroAdapter


def window_frames(start: int, span: int, count: int) -> list[int]:
    """`count` frame indices spread evenly over the `span` video frames from `start` (repeats when span < count)."""
    return [start + (i * span) // count for i in range(count)]


def plan_windows(start: int, stop: int, count: int, window: int, stride: int | None = None) -> list[list[int]]:
    """Windows of `window` video frames every `stride` frames (default: `window`) over [start, stop).

    Each window is the list of its `count` sampled frames. A range shorter than one window
    gives one window over the whole range; a tail shorter than a window is dropped.
    """
    if window < 1 or (stride is not None and stride < 1):
        raise UsageError("--window and --stride must be at least 1 frame")
    if stop <= start:
        raise UsageError("the frame range is empty")
    window = min(window, stop - start)
    stride = window if stride is None else stride
    return [window_frames(s, window, count) for s in range(start, stop - window + 1, stride)]


def sample_windows(start: int, stop: int, count: int, window: int, n: int) -> list[list[int]]:
    """`n` windows spread evenly over [start, stop) (fewer when they would repeat)."""
    window = min(window, stop - start)
    last = stop - window
    starts = sorted({round(i * last / (n - 1)) if n > 1 else 0 for i in range(n)})
    return [window_frames(s, window, count) for s in starts]


def union_frames(windows: Sequence[Sequence[int]]) -> list[int]:
    """Every frame some window needs, once, in order."""
    return sorted({i for w in windows for i in w})


def clip_rows(windows: Sequence[Sequence[int]], frames: Sequence[int]) -> list[int]:
    """Row of each window frame (windows concatenated) in a tensor holding `frames` in order."""
    where = {f: r for r, f in enumerate(frames)}
    return [where[i] for w in windows for i in w]


def to_slices(act: Tensor) -> Tensor:
    """(B, C, T, h, w) -> (B*T, C, h, w): one row per time step, batch-major."""
    b, c, t, h, w = act.shape
    return act.transpose(1, 2).reshape(b * t, c, h, w)


def from_slices(rows: Tensor, steps: int) -> Tensor:
    """(B*T, C, h, w) -> (B, C, T, h, w), the inverse of `to_slices`."""
    n, c, h, w = rows.shape
    return rows.reshape(n // steps, steps, c, h, w).transpose(1, 2)


def slice_indices(windows: Sequence[int], steps: int) -> list[int]:
    """Rows of `to_slices` output that belong to the given window indices."""
    return [w * steps + j for w in windows for j in range(steps)]


class ClipAdapter(nn.Module):
    """One `MicroAdapter` per pathway, applied per frame; `forward` stacks each pathway's frames.

    `positions[q]`: the clip positions pathway q's time steps stand for; `clip_len`: frames per clip.
    """

    def __init__(self, adapters: Sequence[MicroAdapter], positions: Sequence[Sequence[int]], clip_len: int,
                 names: Sequence[str]) -> None:
        super().__init__()
        if not (len(adapters) == len(positions) == len(names)) or not adapters:
            raise UsageError("a clip adapter needs one adapter and one position list per pathway")
        self.pathway_adapters = nn.ModuleList(adapters)
        self.positions = [list(p) for p in positions]
        self.clip_len = int(clip_len)
        self.names = list(names)

    @property
    def kind(self) -> str:
        return self.pathway_adapters[0].kind

    @property
    def hidden(self) -> int:
        return self.pathway_adapters[0].hidden

    @property
    def in_channels(self) -> int:
        return self.pathway_adapters[0].in_channels

    def pathway_frames(self, q: int, feat: Tensor) -> Tensor:
        """Pathway `q`'s adapter on per-frame features (N, C, h, w) -> (N, C_q, h_q, w_q)."""
        return self.pathway_adapters[q](feat)

    def stack(self, q: int, frames: Tensor) -> Tensor:
        """Per-frame outputs of pathway `q` for whole clips (B*clip_len, ...) -> (B, C_q, T'_q, h, w)."""
        b = frames.shape[0] // self.clip_len
        picked = frames.reshape(b, self.clip_len, *frames.shape[1:])[:, self.positions[q]]
        return picked.transpose(1, 2)

    def forward(self, feat: Tensor) -> list[Tensor]:
        """Per-frame INR features of whole clips (B*clip_len, C, h, w) -> the injection point's pathway list."""
        if feat.shape[0] % self.clip_len:
            raise UsageError(f"clip adapter input holds {feat.shape[0]} frames, not a multiple of {self.clip_len}")
        b = feat.shape[0] // self.clip_len
        clips = feat.reshape(b, self.clip_len, *feat.shape[1:])
        out = []
        for q, pos in enumerate(self.positions):
            rows = clips[:, pos].reshape(b * len(pos), *feat.shape[1:])
            out.append(from_slices(self.pathway_frames(q, rows), len(pos)))
        return out

    def num_parameters(self) -> int:
        return sum(a.num_parameters() for a in self.pathway_adapters)

    def stored(self, bits: int | None = None) -> "ClipAdapter":
        """The adapter as `pack(meta, bits)` stores it (each pathway adapter as `MicroAdapter.stored`)."""
        return ClipAdapter([a.stored(bits) for a in self.pathway_adapters], self.positions, self.clip_len, self.names)

    def pack(self, meta: dict, bits: int | None = None) -> bytes:
        """The adapter section's tensor bundle: every pathway adapter as `MicroAdapter.pack` stores it,
        tensors named ``{pathway}/{tensor}``; `meta` gains ``bits``."""
        arrays: dict[str, np.ndarray] = {}
        quant: dict[str, object] = {}
        for name, a in zip(self.names, self.pathway_adapters):
            arr, q = a._stored_arrays(bits)
            arrays.update({f"{name}/{k}": v for k, v in arr.items()})
            quant.update({f"{name}/{k}": v for k, v in q.items()})
        return pack_tensors(arrays, quant, meta={**meta, "bits": bits or 16})

    def to_arrays(self, dtype: str | np.dtype = "float32") -> dict[str, np.ndarray]:
        """Tensors of every pathway adapter, named ``{pathway}/{tensor}``."""
        return {f"{name}/{k}": v for name, a in zip(self.names, self.pathway_adapters)
                for k, v in a.to_arrays(dtype).items()}

    @classmethod
    def from_arrays(cls, d: Mapping[str, np.ndarray], names: Sequence[str], sizes: Sequence[tuple[int, int]],
                    positions: Sequence[Sequence[int]], clip_len: int, kind: str) -> "ClipAdapter":
        """Inverse of `to_arrays`, for pathways `names` with output sizes `sizes`."""
        extra = [k for k in d if k.split("/", 1)[0] not in names]
        if extra:
            raise UsageError(f"tensor {extra[0]!r} belongs to no pathway of this backbone")
        adapters = [MicroAdapter.from_arrays({k.split("/", 1)[1]: v for k, v in d.items() if k.startswith(name + "/")},
                                             tuple(size), kind=kind) for name, size in zip(names, sizes)]
        return cls(adapters, positions, clip_len, names)
