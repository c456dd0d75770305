"""One batch job: encode an input (resuming its checkpoint), attach tasks, verify; failures become a row.

`run_job` is what a Ray task (or the in-process loop) runs. It never raises for a bad input: every
failure is returned as a row with the exit code and the one-line message the CLI would print. Only
an interrupt (Ctrl-C, or a Ray cancel) ends the job early, as a row with status ``interrupted``.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from ..codec.encode import EncodeOptions
from ..errors import FormatError, Interrupted, UsageError, as_nvcodec_error
from .inputs import BatchInput

ENCODED, ATTACHED, SKIPPED, FAILED, INTERRUPTED, PENDING = "encoded", "attached", "skipped", "failed", "interrupted", "pending"


@dataclass(frozen=True)
class BatchJob:
    """Everything one job needs; plain data, so it pickles to a Ray worker."""

    input: BatchInput
    options: EncodeOptions
    tasks: tuple[str, ...] = ()
    attach_options: dict = field(default_factory=dict)
    force: bool = False


def pending_row(item: BatchInput) -> dict[str, Any]:
    """The manifest row of a job that has not finished (yet)."""
    return {"input": item.path, "output": item.output, "frames": list(item.frames) if item.frames else None,
            "status": PENDING, "exit_code": None, "error": None, "bytes": None, "bpp": None, "psnr": None,
            "encode_seconds": None, "tasks": [], "resumed": False, "replaced": None, "seconds": None,
            "cpu_seconds": None, "started_at": None, "finished_at": None, "worker": None}


def _output_state(path: str) -> tuple[dict | None, str | None]:
    """(info report, None) when `path` is a complete, verified `.nvp`; (None, why) when it is damaged."""
    from ..codec.info import describe
    from ..container import verify_nvp

    try:
        verify_nvp(path)
        return describe(path), None
    except FormatError as exc:
        return None, str(exc)


def _encode(job: BatchJob, row: dict[str, Any], replace: bool) -> None:
    from ..codec.encode import encode

    item = job.input
    ckpt = item.output + ".ckpt"
    resume = os.path.isdir(ckpt) and not job.force
    opts = dataclasses.replace(job.options, frames=item.frames if item.frames is not None else job.options.frames,
                               resume=resume)
    os.makedirs(os.path.dirname(os.path.abspath(item.output)), exist_ok=True)
    try:
        encode(item.path, item.output, opts, overwrite=replace or resume)
    except UsageError as exc:
        if not resume or "checkpoint" not in str(exc):
            raise
        row["replaced"] = f"checkpoint unusable, encoded afresh: {exc}"
        encode(item.path, item.output, dataclasses.replace(opts, resume=False), overwrite=replace)
        resume = False
    row["resumed"] = resume


def _attach_missing(job: BatchJob, have: list[str]) -> list[str]:
    from ..adapt.attach import attach

    done = []
    for task in job.tasks:
        if task not in have:
            attach(job.input.output, task, source=job.input.path, source_stream=job.options.stream,
                   device=job.options.device, **job.attach_options)
            done.append(task)
    return done


def _fill(row: dict[str, Any], report: dict) -> None:
    video, quality, enc = report.get("video") or {}, report.get("quality") or {}, report.get("encode") or {}
    row.update(bytes=report["format"]["file_bytes"], bpp=video.get("bpp"), psnr=quality.get("psnr"),
               encode_seconds=enc.get("encode_seconds"), tasks=[t["task"] for t in report.get("tasks", [])])


def run_job(job: BatchJob) -> dict[str, Any]:
    """Bring `job.input`'s output up to date (encode and/or attach, or nothing) and return its manifest row."""
    row = pending_row(job.input)
    row["worker"] = f"{socket.gethostname()[:64]}:{os.getpid()}"
    row["started_at"] = time.time()
    t0, c0 = time.monotonic(), time.process_time()
    try:
        report, damaged = (None, None)
        if os.path.isfile(job.input.output) and not job.force:
            report, damaged = _output_state(job.input.output)
            if damaged:
                row["replaced"] = f"damaged output re-encoded: {damaged}"
        status = SKIPPED
        if report is None:
            _encode(job, row, replace=job.force or damaged is not None)
            status = ENCODED
            report, damaged = _output_state(job.input.output)
            if damaged:
                raise FormatError(f"the new output does not verify: {damaged}")
        if _attach_missing(job, [t["task"] for t in report.get("tasks", [])]):
            status = ATTACHED if status == SKIPPED else status
            report, damaged = _output_state(job.input.output)
            if damaged:
                raise FormatError(f"the output does not verify after attach: {damaged}")
        _fill(row, report)
        row["status"] = status
    except (Interrupted, KeyboardInterrupt):
        row.update(status=INTERRUPTED, exit_code=Interrupted.exit_code, error="interrupted; run the batch again to resume")
    except Exception as exc:  # every failure is recorded, none stops the other jobs
        err = as_nvcodec_error(exc)
        message = str(err) if err is not None else f"internal error: {type(exc).__name__}: {exc}"
        row.update(status=FAILED, exit_code=err.exit_code if err is not None else 1, error=message)
    row["seconds"] = time.monotonic() - t0
    row["cpu_seconds"] = time.process_time() - c0
    row["finished_at"] = time.time()
    return row
