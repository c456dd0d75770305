"""Run jobs on Ray (a local instance, or a cluster) or, without Ray, one after another in this process.

Both runners take a list of plain-data jobs and a function of one job returning its result row, and
call `on_result(index, row)` as each finishes (in completion order). A row whose status is
``interrupted`` (or a Ctrl-C in the driver) stops the run: jobs still in flight are cancelled, which
raises KeyboardInterrupt inside them, so an encode saves its checkpoint before it ends.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..errors import Interrupted, UsageError
from ..progress import ProgressCallback, emit

NO_RAY_NOTE = "Ray is not installed (pip install 'nvcodec[ray]'): ran the jobs one after another in this process"
LOCAL_OBJECT_STORE_BYTES = 128 << 20
CANCEL_GRACE_SECONDS = 30.0


@dataclass
class RunnerInfo:
    """How the jobs ran: `kind` is ``ray`` or ``sequential``; `note` says why when Ray was not used."""

    kind: str
    address: str | None = None
    note: str | None = None
    workers: int | None = None
    cpus_per_job: float = 1.0
    gpus_per_job: float = 0.0
    cluster_cpus: float | None = None
    cluster_gpus: float | None = None


def check_ray_options(ray: str, workers: int | None, cpus_per_job: float, gpus_per_job: float) -> None:
    """UsageError for option values that cannot work."""
    if not ray:
        raise UsageError("--ray must be auto, local, off or a cluster ADDRESS")
    if workers is not None and workers < 1:
        raise UsageError("--workers must be at least 1")
    if not cpus_per_job > 0:
        raise UsageError("--cpus-per-job must be positive")
    if gpus_per_job < 0:
        raise UsageError("--gpus-per-job must not be negative")


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        return None
    return ray


class _Progress:
    """Overall progress: done / failed / running counts and an ETA from the finished jobs' pace."""

    def __init__(self, total: int, callback: ProgressCallback | None, failed_statuses: tuple[str, ...]) -> None:
        self.total, self.callback, self.failed_statuses = total, callback, failed_statuses
        self.done = self.failed = self.running = self.quick = 0
        self.t0 = time.monotonic()

    def started(self, n: int = 1) -> None:
        self.running += n
        self._emit()

    def finished(self, row: dict) -> None:
        self.running = max(0, self.running - 1)
        if row.get("status") in self.failed_statuses:
            self.failed += 1
        else:
            self.done += 1
        if row.get("status") == "skipped":
            self.quick += 1
        self._emit()

    def _emit(self) -> None:
        finished = self.done + self.failed
        worked = finished - self.quick
        remaining = self.total - finished
        eta = (time.monotonic() - self.t0) / worked * remaining if worked else None
        emit(self.callback, "batch", finished, self.total, done=self.done, failed=self.failed, running=self.running,
             eta=eta)


def run_sequential(jobs: Sequence[Any], fn: Callable[[Any], dict], on_result: Callable[[int, dict], None],
                   progress: _Progress) -> None:
    """Each job in turn, in this process."""
    for i, job in enumerate(jobs):
        progress.started()
        row = fn(job)
        progress.finished(row)
        on_result(i, row)
        if row.get("status") == "interrupted":
            raise Interrupted("batch interrupted; run it again to resume")


def connect_ray(ray_mod: Any, address: str, workers: int | None, cpus_per_job: float) -> tuple[str, bool]:
    """Join the cluster at `address` (``auto``: $RAY_ADDRESS, else a new local instance); returns (where, started)."""
    if ray_mod.is_initialized():
        return "existing", False
    target = os.environ.get("RAY_ADDRESS") if address == "auto" else (None if address == "local" else address)
    kwargs: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False, "configure_logging": True,
                              "logging_level": "warning"}
    if target is None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # a local instance we start reports nothing anywhere
        cpus = os.cpu_count() or 1
        if workers is not None:
            cpus = max(cpus, workers * cpus_per_job)
        kwargs.update(address="local", num_cpus=cpus, object_store_memory=LOCAL_OBJECT_STORE_BYTES)
    else:
        kwargs["address"] = target
    try:
        ray_mod.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UsageError(f"--ray {address}: cannot start or join Ray ({' '.join(str(exc).split())[:300]})") from None
    return target or "local", True


def run_ray(ray_mod: Any, jobs: Sequence[Any], fn: Callable[[Any], dict], on_result: Callable[[int, dict], None],
            progress: _Progress, info: RunnerInfo) -> None:
    """Each job as a Ray task (`cpus_per_job` CPUs, `gpus_per_job` GPUs), at most `workers` in flight."""
    remote = ray_mod.remote(num_cpus=info.cpus_per_job, num_gpus=info.gpus_per_job, max_retries=0)(_in_worker)
    threads = max(1, int(info.cpus_per_job))
    limit = info.workers or len(jobs)
    in_flight: dict[Any, int] = {}
    queue = list(range(len(jobs)))
    try:
        while queue or in_flight:
            while queue and len(in_flight) < limit:
                i = queue.pop(0)
                in_flight[remote.remote(fn, jobs[i], threads)] = i
                progress.started()
            ready, _ = ray_mod.wait(list(in_flight), num_returns=1)
            for ref in ready:
                i = in_flight.pop(ref)
                row = _get(ray_mod, ref, jobs[i])
                progress.finished(row)
                on_result(i, row)
                if row.get("status") == "interrupted":
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        for ref in in_flight:
            ray_mod.cancel(ref)
        if in_flight:
            ray_mod.wait(list(in_flight), num_returns=len(in_flight), timeout=CANCEL_GRACE_SECONDS)
        raise Interrupted("batch interrupted; run it again to resume") from None


def _in_worker(fn: Callable[[Any], dict], job: Any, threads: int) -> dict:
    """A Ray task: `fn(job)` with torch using the task's CPUs."""
    import torch

    torch.set_num_threads(threads)
    return fn(job)


def _get(ray_mod: Any, ref: Any, job: Any) -> dict:
    """The row a Ray task returned; a task that died (worker killed, out of memory) becomes a failed row."""
    from .job import FAILED, pending_row

    try:
        return ray_mod.get(ref)
    except ray_mod.exceptions.RayError as exc:
        row = pending_row(job.input)
        text = " ".join(str(exc).split())[:500]
        row.update(status=FAILED, exit_code=1, error=f"Ray task failed: {type(exc).__name__}: {text}")
        return row


def _started(info: RunnerInfo, total: int, progress: ProgressCallback | None,
             on_start: Callable[[RunnerInfo], None] | None) -> None:
    """Tell `on_start` and the progress callback (event info `note`: a line for the user) how the jobs run."""
    if info.kind == "ray":
        gpus = f", {info.cluster_gpus:g} GPUs" if info.cluster_gpus else ""
        line = f"{total} jobs on Ray ({info.address}: {info.cluster_cpus or 0:g} CPUs{gpus})"
    else:
        line = f"{total} jobs: {info.note}"
    if on_start is not None:
        on_start(info)
    emit(progress, "batch", 0, total, note=line, runner=info.kind)


def run_jobs(jobs: Sequence[Any], fn: Callable[[Any], dict], on_result: Callable[[int, dict], None], *,
             ray: str = "auto", workers: int | None = None, cpus_per_job: float = 1.0, gpus_per_job: float = 0.0,
             progress: ProgressCallback | None = None, failed_statuses: tuple[str, ...] = ("failed",),
             on_start: Callable[[RunnerInfo], None] | None = None, device: str = "auto") -> RunnerInfo:
    """Run `fn` over `jobs` on Ray as `ray` says (``auto``, ``local``, ``off`` or an address); returns how.

    Ray hides the GPUs from a task that asks for none, so `device` ``cuda...`` on Ray needs `gpus_per_job`.
    """
    check_ray_options(ray, workers, cpus_per_job, gpus_per_job)
    tracker = _Progress(len(jobs), progress, failed_statuses)
    ray_mod = None if ray == "off" else _import_ray()
    if ray_mod is None:
        if ray not in ("auto", "local", "off"):
            raise UsageError(f"--ray {ray}: Ray is not installed (pip install 'nvcodec[ray]')")
        info = RunnerInfo("sequential", note="--ray off: ran the jobs one after another in this process"
                          if ray == "off" else NO_RAY_NOTE, workers=1)
        _started(info, len(jobs), progress, on_start)
        run_sequential(jobs, fn, on_result, tracker)
        return info
    where, started = connect_ray(ray_mod, ray, workers, cpus_per_job)
    try:
        res = ray_mod.cluster_resources()
        info = RunnerInfo("ray", address=where, workers=workers, cpus_per_job=cpus_per_job, gpus_per_job=gpus_per_job,
                          cluster_cpus=res.get("CPU"), cluster_gpus=res.get("GPU"))
        if device.startswith("cuda") and gpus_per_job == 0:
            raise UsageError(f"--device {device} on Ray needs --gpus-per-job (Ray hides GPUs from jobs that ask for none)")
        if gpus_per_job > (info.cluster_gpus or 0):
            raise UsageError(f"--gpus-per-job {gpus_per_job}: the Ray cluster has {info.cluster_gpus or 0:g} GPUs")
        _started(info, len(jobs), progress, on_start)
        run_ray(ray_mod, jobs, fn, on_result, tracker, info)
    finally:
        if started:
            ray_mod.shutdown()
    return info
