"""`batch_infer()`: run `infer()` over every `.nvp` of a folder, on Ray or in-process, into one JSONL file."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError, as_nvcodec_error, no_space_as_error
from ..progress import ProgressCallback
from .manifest import batch_exit_code
from .runner import run_jobs

MAX_FILES = 1_000_000


@dataclass(frozen=True)
class InferJob:
    """One file's inference; plain data for a Ray worker."""

    path: str
    tasks: tuple[str, ...]
    frames: tuple[int | None, int | None] | None = None
    weights: str | None = None
    threshold: float | None = None
    device: str = "auto"


def find_nvp(folder: str) -> list[str]:
    """Every `*.nvp` under `folder` (recursive, dotfiles and checkpoint folders skipped), in name order."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not d.endswith(".ckpt"))
        found += [os.path.join(root, f) for f in sorted(files) if f.endswith(".nvp") and not f.startswith(".")]
        if len(found) > MAX_FILES:
            raise UsageError(f"{folder}: more than {MAX_FILES:,} .nvp files; split the batch")
    return found


def run_infer_job(job: InferJob) -> dict[str, Any]:
    """`infer()` on one file; its per-frame predictions as records, or a failed row (never raises)."""
    from ..route.infer import infer

    row: dict[str, Any] = {"file": job.path, "status": "ok", "exit_code": None, "error": None, "frames": None,
                           "records": []}
    t0, c0 = time.monotonic(), time.process_time()
    try:
        report = infer(job.path, list(job.tasks), frames=job.frames, weights=job.weights, threshold=job.threshold,
                       device=job.device)
        row["frames"] = report["frames"]
        for name, r in report["tasks"].items():
            row["records"] += [{"file": job.path, "task": name, "frame": f["frame"], "predictions": f["predictions"],
                                "weights_random": r["weights_random"]} for f in r["frames"]]
    except KeyboardInterrupt:
        row.update(status="interrupted", exit_code=130, error="interrupted")
    except Exception as exc:  # recorded; the other files go on
        err = as_nvcodec_error(exc)
        row.update(status="failed", exit_code=err.exit_code if err is not None else 1,
                   error=str(err) if err is not None else f"internal error: {type(exc).__name__}: {exc}")
    row["seconds"] = time.monotonic() - t0
    row["cpu_seconds"] = time.process_time() - c0
    return row


def _write_jsonl(path: str, rows: list[dict[str, Any]]) -> int:
    from ..bench.run import json_safe
    from ..video.writer import atomic_output

    count = 0
    with no_space_as_error(path), atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            lines = row["records"] or ([{"file": row["file"], "error": row["error"], "exit_code": row["exit_code"]}]
                                       if row["status"] != "ok" else [])
            for rec in lines:
                fh.write(json.dumps(json_safe(rec), allow_nan=False) + "\n")
                count += 1
    return count


def batch_infer(folder: str, tasks: list[str] | tuple[str, ...], *, output: str | None = None,
                frames: tuple[int | None, int | None] | None = None, weights: str | None = None,
                threshold: float | None = None, device: str = "auto", ray: str = "auto", workers: int | None = None,
                cpus_per_job: float = 1.0, gpus_per_job: float = 0.0,
                progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Infer `tasks` on every `.nvp` under `folder`; writes one JSONL (default `folder/predictions.jsonl`).

    One line per (file, task, frame): ``file``, ``task``, ``frame``, ``predictions``,
    ``weights_random``; a file that fails gets one line with ``error`` and ``exit_code`` instead.
    Returns a summary with a row per file (status, exit code, seconds, CPU seconds).
    """
    from ..models.registry import get_task

    task_names = tuple(dict.fromkeys(tasks))
    if not task_names:
        raise UsageError("--task needs at least one task name")
    for t in task_names:
        get_task(t)
    if not os.path.isdir(folder):
        raise UsageError(f"{folder}: not a folder")
    files = find_nvp(folder)
    if not files:
        raise UsageError(f"{folder}: no .nvp files found")
    output = output or os.path.join(folder, "predictions.jsonl")
    if os.path.isdir(output):
        raise UsageError(f"{output}: is a folder")
    jobs = [InferJob(f, task_names, frames, weights, threshold, device) for f in files]
    rows: list[dict[str, Any] | None] = [None] * len(jobs)
    t0 = time.monotonic()

    def on_result(i: int, row: dict[str, Any]) -> None:
        rows[i] = row

    info = run_jobs(jobs, run_infer_job, on_result, ray=ray, workers=workers, cpus_per_job=cpus_per_job,
                    gpus_per_job=gpus_per_job, progress=progress, failed_statuses=("failed", "interrupted"),
                    device=device)
    done = [r for r in rows if r is not None]
    lines = _write_jsonl(output, done)
    seconds = time.monotonic() - t0
    ok = [r for r in done if r["status"] == "ok"]
    return {
        "output": output, "tasks": list(task_names), "runner": dataclasses.asdict(info),
        "summary": {"files": len(files), "ok": len(ok), "failed": len(done) - len(ok), "lines": lines,
                    "frames": sum(r["frames"][1] - r["frames"][0] for r in ok), "seconds": seconds,
                    "cpu_seconds": sum(r["cpu_seconds"] for r in done), "exit_code": batch_exit_code(
                        [{"status": "failed" if r["status"] != "ok" else "ok", "exit_code": r["exit_code"]} for r in done])},
        "files": [{k: v for k, v in r.items() if k != "records"} for r in done],
    }
