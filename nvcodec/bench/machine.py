"""Description of the machine a benchmark ran on: CPU, GPU, library versions, threads, load."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch


def cpu_model() -> str | None:
    """The CPU's model name (/proc/cpuinfo), or what `platform` knows, or None."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _mem_total_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2 ** 20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _usable_cores() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def load_average() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages (2 decimals), None where the OS has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def ffmpeg_versions() -> dict[str, Any]:
    """PyAV version, the FFmpeg release it was built against and its library versions."""
    import av

    libs = {name: ".".join(str(v) for v in ver) for name, ver in getattr(av, "library_versions", {}).items()}
    return {"pyav": av.__version__, "ffmpeg": getattr(av, "ffmpeg_version_info", None), "libraries": libs}


def describe_machine(device: torch.device | str | None = None) -> dict[str, Any]:
    """CPU model, cores, memory, torch/FFmpeg/PyAV versions, torch threads, GPU (when `device` is CUDA)."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    gpu = None
    if dev.type == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(dev)
        gpu = {"name": props.name, "memory_gib": round(props.total_memory / 2 ** 30, 1),
               "capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda,
               "cudnn": torch.backends.cudnn.version()}
    return {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": _usable_cores(),
        "memory_gib": _mem_total_gib(),
        "load_average": load_average(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "gpu": gpu,
        **ffmpeg_versions(),
    }


def compute_probe(device: torch.device | str | None = None, size: int = 1024, repeat: int = 7) -> dict[str, Any]:
    """GFLOP/s of a fixed fp32 matmul (median of `repeat`): taken at the start and end of a run, it shows
    whether other processes were competing for the CPU/GPU while it ran."""
    from .timing import time_call

    dev = torch.device(device) if device is not None else torch.device("cpu")
    a = torch.randn(size, size, device=dev)
    b = torch.randn(size, size, device=dev)
    r = time_call(lambda: a @ b, repeat=repeat, warmup=2, device=dev)
    return {"matmul": size, "gflops_per_s": 2 * size ** 3 / (r["median_ms"] / 1000.0) / 1e9,
            "min_ms": r["min_ms"], "median_ms": r["median_ms"], "max_ms": r["max_ms"]}
