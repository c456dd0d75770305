"""`batch()`: encode (and attach tasks to) every video of a folder or list, on Ray or in-process."""

from __future__ import annotations

import dataclasses
import os
import time
from datetime import datetime, timezone
from typing import Any

from .. import __version__
from ..codec.encode import EncodeOptions
from ..errors import UsageError, no_space_as_error
from ..progress import ProgressCallback
from .inputs import collect_inputs
from .job import FAILED, INTERRUPTED, BatchJob, pending_row, run_job
from .manifest import MANIFEST_NAME, MANIFEST_VERSION, summarize, write_json_atomic
from .runner import RunnerInfo, run_jobs


def batch(source: str, out_dir: str, options: EncodeOptions | None = None, *, tasks: list[str] | tuple[str, ...] = (),
          attach_options: dict[str, Any] | None = None, ray: str = "auto", workers: int | None = None,
          cpus_per_job: float = 1.0, gpus_per_job: float = 0.0, force: bool = False,
          progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Encode every input of `source` (a folder, or a `PATH[,A:B]` list) into `out_dir`; returns the manifest.

    Each input is one job (a Ray task when Ray is there): a verified output is skipped (with
    `tasks` it only gets the tasks it lacks), an output with an encode checkpoint beside it
    resumes from it, anything else is encoded. `attach_options` go to `attach()` (teacher: the
    input). Failures are rows with the exit code and message, never stopping the other jobs. The
    manifest (`out_dir/manifest.json`) is rewritten atomically as each job finishes.
    """
    opts = options or EncodeOptions()
    opts.validate()
    if opts.resume:
        raise UsageError("batch resumes by itself: an input with a checkpoint in OUT_DIR continues from it")
    task_names = tuple(dict.fromkeys(tasks))
    if task_names:
        from ..models.registry import get_task

        for t in task_names:
            get_task(t)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UsageError(f"{out_dir}: not a folder")
    inputs = collect_inputs(source, out_dir)
    with no_space_as_error(out_dir):
        os.makedirs(out_dir, exist_ok=True)
    jobs = [BatchJob(item, opts, task_names, dict(attach_options or {}), force) for item in inputs]
    rows = [pending_row(item) for item in inputs]
    manifest: dict[str, Any] = {
        "version": MANIFEST_VERSION, "tool_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": os.fspath(source), "out_dir": os.fspath(out_dir), "tasks": list(task_names),
        "options": {k: v for k, v in dataclasses.asdict(opts).items() if k not in ("resume", "extra")},
        "attach_options": dict(attach_options or {}), "force": force,
        "runner": None, "summary": None, "jobs": rows,
    }
    path = os.path.join(out_dir, MANIFEST_NAME)
    t0 = time.monotonic()

    def save() -> None:
        manifest["summary"] = summarize(rows, time.monotonic() - t0)
        write_json_atomic(path, manifest)

    def on_start(info: RunnerInfo) -> None:
        manifest["runner"] = dataclasses.asdict(info)
        save()

    def on_result(i: int, row: dict[str, Any]) -> None:
        rows[i] = row
        save()

    try:
        run_jobs(jobs, run_job, on_result, ray=ray, workers=workers, cpus_per_job=cpus_per_job,
                 gpus_per_job=gpus_per_job, progress=progress, failed_statuses=(FAILED, INTERRUPTED),
                 on_start=on_start, device=opts.device)
    finally:
        if manifest["runner"] is not None:
            save()
    manifest["manifest"] = path
    return manifest
