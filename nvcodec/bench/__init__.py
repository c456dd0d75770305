"""`nvcodec bench`: nvcodec against the codec pipeline (rate-distortion, rate-accuracy, latency, FLOPs).

    from nvcodec.bench import BenchOptions, run_bench
    report = run_bench("clip.mp4", BenchOptions(tasks=["resnet50"], frames=(0, 24), weights="random"))
"""

from __future__ import annotations

from typing import Any

__all__ = ["BenchOptions", "run_bench", "render_report", "write_plots"]


def __getattr__(name: str) -> Any:
    # Lazy so that importing the package does not load torch, PyAV and the task models.
    if name in ("BenchOptions", "run_bench"):
        from . import run

        return getattr(run, name)
    if name == "render_report":
        from .report import render_report

        return render_report
    if name == "write_plots":
        from .plots import write_plots

        return write_plots
    raise AttributeError(f"module 'nvcodec.bench' has no attribute {name!r}")
