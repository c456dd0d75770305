"""INR prefix activations shared across requests: per frame and layer, in a bytes-bounded LRU cache.

A batch asks for layers ascending. A layer whose activations are cached for every frame of the
batch is taken from the cache; otherwise decoding continues from the deepest activation at hand
(this batch's previous layer, or a cached shallower layer), so no block runs twice for a frame.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ..codec.video import NvpVideo, Segment
from ..route.infer import Clock, PrefixSource
from .caches import LRUCache
from .library import VideoKey
from .loaded import tensor_bytes
from .stats import Stats


def cached_prefix(video: NvpVideo, key: VideoKey, device: torch.device, cache: LRUCache, stats: Stats) -> PrefixSource:
    """A `PrefixSource` for `run_routes` that reads and fills `cache` (keys: (video key, layer, frame))."""

    def stacked(layer: int, idx: list[int]) -> torch.Tensor | None:
        if not all(cache.peek((key, layer, i)) for i in idx):
            return None
        rows = [cache.get((key, layer, i)) for i in idx]
        if any(r is None for r in rows):  # evicted between peek and get by another thread
            return None
        stats.add(prefix_cache_hits=len(idx))
        return torch.stack(rows)

    def source(seg: Segment, idx: list[int], layers: list[int], clock: Clock) -> Iterator[tuple[int, torch.Tensor, float]]:
        feat: torch.Tensor | None = None
        prev = -1
        for k in layers:
            before = clock.ms.get("decode", 0.0)
            hit = stacked(k, idx)
            if hit is not None:
                feat, prev = hit, k
                yield k, feat, 0.0
                continue
            base, start = feat, prev
            for j in range(k - 1, prev, -1):
                got = stacked(j, idx)
                if got is not None:
                    base, start = got, j
                    break
            dec, _ = video.decoder(seg, layers[-1], device)
            if base is None:
                x_in = clock.run("decode", video.inputs, seg, idx, device, layers[-1])
                feat = clock.run("decode", dec.features, x_in, k)
            else:
                feat = clock.run("decode", dec.continue_features, base, start, k)
            stats.add(prefix_decodes=1, decoded_blocks=(k - start) * len(idx))
            for r, i in enumerate(idx):
                row = feat[r].clone()
                cache.put((key, k, i), row, tensor_bytes(row))
            prev = k
            yield k, feat, clock.ms["decode"] - before

    return source
