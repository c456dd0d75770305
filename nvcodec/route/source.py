"""Frames of an `.nvp` read from its original video: the reference attach, tune and infer compare against."""

from __future__ import annotations

import numpy as np
import torch

from ..codec.meta import recorded_stream
from ..codec.video import NvpVideo
from ..errors import UsageError


def source_frames(video: NvpVideo, source: str, idx: list[int], stream: int | None = None) -> torch.Tensor:
    """Frames `idx` of the `.nvp` taken from its original video `source` (uint8, N x H x W x 3).

    The file's recorded source range maps its frame i to source frame start + i; the stream
    recorded at encode is used unless `stream` is given.
    """
    from ..video import read_frames

    m = video.metadata
    offset = m.source_frames[0] if m.source_frames else 0
    if stream is None:
        stream = recorded_stream(video.reader)
    lo, hi = offset + min(idx), offset + max(idx) + 1
    frames, info = read_frames(source, stream=stream, frames=(lo, hi))
    if (info.width, info.height) != (m.width, m.height) or frames.shape[0] != hi - lo:
        raise UsageError(f"{source} is {info.width}x{info.height} with {info.frames} frames; it does not match "
                         f"this file's {m.width}x{m.height} frames {offset}..{offset + m.frames}")
    return torch.from_numpy(np.ascontiguousarray(frames[[i + offset - lo for i in idx]]))
