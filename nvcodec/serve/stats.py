"""The scheduler's counters: what it did, so that tests and `/metrics` can prove the sharing."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


@dataclass
class Stats:
    """Counters since start-up (`snapshot` reads them all at once).

    - requests: infer requests submitted; failed / cancelled: answered with an error / dropped
      because nobody waited for them (timed out or client gone);
    - batches: batches run; batch_sizes: requests per batch (histogram over BATCH_SIZE_BUCKETS);
    - prefix_decodes: INR prefixes run (one per frame batch and layer reached by decoding);
    - prefix_cache_hits: per frame and layer, activations taken from the prefix cache instead;
    - decoded_blocks: INR decoder blocks run, per frame (a prefix to layer k from scratch is k + 1);
    - result_cache_hits / result_cache_misses: per task and frame (window), answers reused / computed;
    - backbone_loads / adapter_loads: backbones built and adapter sets read, per process;
    - frames_decoded: full frames decoded for the PNG endpoint.
    """

    requests: int = 0
    failed: int = 0
    cancelled: int = 0
    batches: int = 0
    prefix_decodes: int = 0
    prefix_cache_hits: int = 0
    decoded_blocks: int = 0
    result_cache_hits: int = 0
    result_cache_misses: int = 0
    backbone_loads: int = 0
    adapter_loads: int = 0
    frames_decoded: int = 0
    batch_sizes: list[int] = field(default_factory=lambda: [0] * (len(BATCH_SIZE_BUCKETS) + 1))
    batch_size_sum: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        """Add to counters by name."""
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def batch(self, size: int) -> None:
        """Count one batch of `size` requests."""
        with self._lock:
            self.batches += 1
            self.batch_size_sum += size
            i = next((j for j, b in enumerate(BATCH_SIZE_BUCKETS) if size <= b), len(BATCH_SIZE_BUCKETS))
            self.batch_sizes[i] += 1

    def snapshot(self) -> dict:
        """Every counter, as plain values."""
        with self._lock:
            return {f.name: (list(getattr(self, f.name)) if f.name == "batch_sizes" else getattr(self, f.name))
                    for f in fields(self) if not f.name.startswith("_")}
