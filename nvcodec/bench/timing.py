"""Wall-clock timing: warm-up, then the median of N runs, CUDA synchronised around every stage."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch


def sync(device: torch.device | str | None) -> None:
    """Wait for queued CUDA work on `device` (no-op on CPU)."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(torch.device(device))


class StageClock:
    """Accumulates wall time per named stage within one pass; CUDA is synchronised before and after each call."""

    def __init__(self, device: torch.device | str | None) -> None:
        self.device = device
        self.ms: dict[str, float] = {}

    def run(self, stage: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call `fn(*args, **kwargs)`, add its wall time to `stage`, return its result."""
        sync(self.device)
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        sync(self.device)
        self.ms[stage] = self.ms.get(stage, 0.0) + (time.perf_counter() - t) * 1000.0
        return out


@dataclass
class Timing:
    """Per-frame latency of a pipeline: medians over the timed passes, per stage and in total."""

    stages_ms: dict[str, float]
    total_ms: float
    passes_ms: list[float]
    repeat: int
    warmup: int
    frames: int
    divisors: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (the total is the median of per-pass totals, not the sum of stage medians)."""
        return {"stages_ms": dict(self.stages_ms), "total_ms": self.total_ms,
                "min_ms": min(self.passes_ms), "max_ms": max(self.passes_ms), "passes_ms": list(self.passes_ms),
                "repeat": self.repeat, "warmup": self.warmup, "frames_per_pass": self.frames,
                "stage_frames": dict(self.divisors)}


def measure_passes(run_pass: Callable[[StageClock, int], None], *, frames: int, repeat: int, warmup: int,
                   device: torch.device | str | None, divisors: dict[str, int] | None = None) -> Timing:
    """Run `run_pass(clock, pass_index)` `warmup + repeat` times; per-frame ms = stage time / frames.

    A stage listed in `divisors` is divided by its own frame count instead (e.g. sequential H.264
    decoding of the whole clip, amortised over every frame of it).
    """
    if repeat < 1 or warmup < 0 or frames < 1:
        raise ValueError("repeat >= 1, warmup >= 0 and frames >= 1 are required")
    div = dict(divisors or {})
    per_pass: list[dict[str, float]] = []
    for i in range(warmup + repeat):
        clock = StageClock(device)
        run_pass(clock, i)
        if i >= warmup:
            per_pass.append({k: v / div.get(k, frames) for k, v in clock.ms.items()})
    totals = [sum(p.values()) for p in per_pass]
    stages = {k: statistics.median(p.get(k, 0.0) for p in per_pass) for k in per_pass[0]}
    return Timing(stages, statistics.median(totals), totals, repeat, warmup, frames, div)


def time_call(fn: Callable[[], Any], *, repeat: int, warmup: int, device: torch.device | str | None) -> dict[str, Any]:
    """Median / min / max wall ms of `fn()` over `repeat` runs after `warmup` untimed runs."""
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(max(1, repeat)):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        runs.append((time.perf_counter() - t) * 1000.0)
    return {"median_ms": statistics.median(runs), "min_ms": min(runs), "max_ms": max(runs), "runs_ms": runs}
