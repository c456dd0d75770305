"""How many CPU threads heavy work may use, and setting torch / OpenMP up for it.

`usable_cpus` is the smallest of: the CPUs the process may run on (`os.sched_getaffinity`), the
cgroup CPU quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`, rounded up) and
`os.cpu_count()`. `resolve_threads` puts an explicit request (`--threads`, `NVCODEC_THREADS`) first.

`configure_environment` sets OpenMP defaults before torch is imported (the CLI calls it first
thing): OMP_NUM_THREADS / MKL_NUM_THREADS to the usable CPUs, and, when other tasks already hold
the CPUs (`machine_busy`), OMP_WAIT_POLICY=PASSIVE so that idle OpenMP workers sleep instead of
spinning: on a shared machine a spinning worker burns the core that the thread it waits for needs. On an idle
machine OpenMP keeps its short spin, which is faster there (passive waiting made 2 threads slower
than 1 on the 2-core development machine). Variables the user set are left alone. `use_threads`
sets torch's intra-op thread count for a block of work and restores it after.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import UsageError

THREADS_ENV = "NVCODEC_THREADS"
MAX_THREADS = 1024
CGROUP_ROOT = "/sys/fs/cgroup"
PROC_STAT = "/proc/stat"
STAT_MAX_BYTES = 1 << 20
RUNNABLE_SAMPLES = 5
RUNNABLE_INTERVAL = 0.004


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read(4096).strip()
    except OSError:
        return None


def parse_cpu_max(text: str | None) -> float | None:
    """CPUs allowed by a cgroup v2 `cpu.max` line ("QUOTA PERIOD" or "max PERIOD"); None: no limit."""
    if not text:
        return None
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    try:
        quota = int(parts[0])
        period = int(parts[1]) if len(parts) > 1 else 100_000
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def parse_cfs(quota: str | None, period: str | None) -> float | None:
    """CPUs allowed by cgroup v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us` (-1: no limit)."""
    try:
        q, p = int(quota or ""), int(period or "")
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def _own_cgroup_dirs(root: str, proc_cgroup: str) -> list[str]:
    """Directories of the process's own cgroup (v2 unified and v1 cpu controller), then the root."""
    dirs = []
    for line in (_read(proc_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            dirs.append(os.path.join(root, path.lstrip("/")))
        elif "cpu" in controllers.split(","):
            for name in ("cpu,cpuacct", "cpu", "cpuacct,cpu"):
                dirs.append(os.path.join(root, name, path.lstrip("/")))
    dirs.append(root)
    dirs += [os.path.join(root, "cpu,cpuacct"), os.path.join(root, "cpu")]
    return dirs


def cgroup_cpus(root: str = CGROUP_ROOT, proc_cgroup: str = "/proc/self/cgroup") -> float | None:
    """The CPU quota of the process's cgroup in CPUs (the tightest found), None when unlimited."""
    limits = []
    for d in _own_cgroup_dirs(root, proc_cgroup):
        v2 = parse_cpu_max(_read(os.path.join(d, "cpu.max")))
        v1 = parse_cfs(_read(os.path.join(d, "cpu.cfs_quota_us")), _read(os.path.join(d, "cpu.cfs_period_us")))
        limits += [x for x in (v2, v1) if x is not None]
    return min(limits) if limits else None


def usable_cpus(root: str = CGROUP_ROOT, proc_cgroup: str = "/proc/self/cgroup") -> int:
    """CPUs this process may actually use: affinity, cgroup quota (rounded up) and cpu_count, at least 1."""
    counts = [os.cpu_count() or 1]
    try:
        counts.append(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        pass
    quota = cgroup_cpus(root, proc_cgroup)
    if quota is not None:
        counts.append(math.ceil(quota - 1e-9))
    return max(1, min(counts))


def resolve_threads(requested: int | None = None) -> int:
    """Threads for heavy work: `requested`, else NVCODEC_THREADS, else `usable_cpus()`."""
    if requested is None:
        text = os.environ.get(THREADS_ENV)
        if text:
            try:
                requested = int(text)
            except ValueError:
                raise UsageError(f"{THREADS_ENV} must be a whole number of threads, not {text!r}") from None
    if requested is None:
        return usable_cpus()
    if not 1 <= requested <= MAX_THREADS:
        raise UsageError(f"--threads must be between 1 and {MAX_THREADS}")
    return requested


def _procs_running(path: str) -> int | None:
    """`procs_running` of a /proc/stat-format file (runnable tasks now, the reader included), or None."""
    try:
        with open(path, "rb") as fh:
            text = fh.read(STAT_MAX_BYTES)
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(b"procs_running "):
            try:
                return int(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


def others_runnable(samples: int = RUNNABLE_SAMPLES, interval: float = RUNNABLE_INTERVAL,
                    path: str = PROC_STAT) -> float | None:
    """Mean count of other tasks runnable right now: `procs_running` less the reading thread itself,
    over `samples` readings `interval` s apart; None where it cannot be read."""
    counts = []
    for i in range(samples):
        n = _procs_running(path)
        if n is None:
            return None
        counts.append(max(n - 1, 0))
        if i + 1 < samples:
            time.sleep(interval)
    return sum(counts) / len(counts)


def machine_busy(threads: int, load: float | None = None, others: float | None = None) -> bool:
    """Whether other work occupies CPUs that `threads` threads would need: fewer than `threads` CPUs
    are free of the tasks runnable right now (`others_runnable`, or `others`; half a task of slack).
    The 1-minute load average (or `load`) decides only where /proc/stat cannot be read (busy when it
    is at least `threads`): it lags both ways. It still counts work that has just ended (2.4 right
    after two 1-thread jobs, so an encode started at once would wait passively on an idle machine), and
    does not yet count work started seconds ago (1.3 two seconds after two busy loops started)."""
    if others is None:
        others = others_runnable()
    if others is not None:
        return usable_cpus() - others < threads - 0.5
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:
            return False
    return load >= threads


def configure_environment(requested: int | None = None, load: float | None = None,
                          others: float | None = None) -> int:
    """Set OpenMP/MKL defaults for `resolve_threads(requested)` threads, and passive waiting when the
    machine is busy (`machine_busy`); call before torch is imported. Returns the thread count; the
    user's own variables win. On an idle machine OpenMP keeps its default (a short spin before
    sleeping), which was measured faster there: the `make demo` encode took 144 s with it and 208 s
    with passive waiting on the 2-core development machine, and 2 threads waiting passively were
    slower than 1 thread (one epoch of a 28k-parameter fit of 96 frames at 160x90: 1.5 s spinning,
    1.7 s on one thread, 2.3 s waiting passively)."""
    n = resolve_threads(requested)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, str(n))
    if machine_busy(n, load, others):
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return n


@contextmanager
def use_threads(requested: int | None = None) -> Iterator[int]:
    """Run the block with torch's intra-op threads at `resolve_threads(requested)` when a count was
    asked for or torch's current one exceeds the usable CPUs; restore the old count after."""
    import torch

    old = torch.get_num_threads()
    explicit = requested is not None or bool(os.environ.get(THREADS_ENV))
    n = resolve_threads(requested)
    change = explicit or old > n
    if change:
        torch.set_num_threads(n)
    try:
        yield n if change else old
    finally:
        if change:
            torch.set_num_threads(old)
