"""A montage clip for classification fidelity: runs of frames cut from several clips, one frame size.

A clip whose top-1 label hardly changes makes top-1 agreement cheap (always answering one label
already scores the constant-label share). Joining equal runs of frames from different clips,
each centre-cropped to one aspect ratio and resized to one size, gives content whose answers
change: with 5 clips of different content no label covers much more than a fifth of the frames.

Two RGB conversions of the same frames are offered for a noise floor: nvcodec's reader
(`nvcodec.video.read_frames`: bicubic chroma, accurate rounding) and PyAV's default
``frame.to_ndarray(format="rgb24")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import av
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UsageError
from ..video import read_frames

Conversion = Literal["nvcodec", "pyav"]
CONVERSIONS = ("nvcodec", "pyav")


def pyav_frames(path: str, start: int, count: int) -> np.ndarray:
    """Frames ``[start, start + count)`` of the first video stream with PyAV's default RGB conversion."""
    out = []
    with av.open(path) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= start + count:
                break
            if i >= start:
                out.append(frame.to_ndarray(format="rgb24"))
    if len(out) != count:
        raise UsageError(f"{path}: only {len(out)} of frames {start}..{start + count - 1} decoded")
    return np.stack(out)


def clip_frames(path: str, start: int, count: int, conversion: Conversion = "nvcodec") -> np.ndarray:
    """Frames ``[start, start + count)`` of `path` as uint8 RGB (N, H, W, 3) under one of `CONVERSIONS`."""
    if conversion == "nvcodec":
        return read_frames(path, frames=(start, start + count))[0]
    if conversion == "pyav":
        return pyav_frames(path, start, count)
    raise UsageError(f"unknown RGB conversion {conversion!r} (use {', '.join(CONVERSIONS)})")


def fit_frames(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """Centre-crop uint8 frames (N, H, W, 3) to the aspect ratio width:height, then resize to
    width x height (bilinear, antialiased when shrinking, rounded to uint8)."""
    if width < 1 or height < 1:
        raise UsageError(f"montage size must be positive, got {width}x{height}")
    n, h, w = frames.shape[:3]
    if w * height > h * width:  # too wide: crop the sides
        cw = max(1, round(h * width / height))
        x0 = (w - cw) // 2
        frames = frames[:, :, x0:x0 + cw]
    elif w * height < h * width:  # too tall: crop top and bottom
        ch = max(1, round(w * height / width))
        y0 = (h - ch) // 2
        frames = frames[:, y0:y0 + ch]
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    if tuple(x.shape[-2:]) != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False,
                          antialias=x.shape[-2] > height or x.shape[-1] > width)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def build_montage(pieces: Sequence[tuple[str, int]], count: int, width: int, height: int,
                  conversion: Conversion = "nvcodec") -> tuple[np.ndarray, list[dict]]:
    """Join `count` frames from each (clip path, first frame) of `pieces`, fitted to width x height.

    Returns the frames (len(pieces) * count, height, width, 3) and, per piece, where its frames
    came from and where they are in the montage: {"clip", "source_frames", "montage_frames"}.
    """
    if count < 1 or not pieces:
        raise UsageError("a montage needs at least one piece of at least one frame")
    parts, layout = [], []
    for i, (path, start) in enumerate(pieces):
        parts.append(fit_frames(clip_frames(path, int(start), count, conversion), width, height))
        layout.append({"clip": str(path), "source_frames": [int(start), int(start) + count],
                       "montage_frames": [i * count, (i + 1) * count]})
    return np.concatenate(parts), layout


def constant_label_share(labels: Sequence[int] | np.ndarray) -> float:
    """Share of frames the most frequent label covers: what always answering one label would score."""
    labels = np.asarray(labels).ravel()
    if labels.size == 0:
        return 0.0
    _, counts = np.unique(labels, return_counts=True)
    return float(counts.max() / labels.size)
