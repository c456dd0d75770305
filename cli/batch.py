"""`nvcodec batch` and `nvcodec batch-infer`: many videos, on Ray when installed (registered by cli/main.py)."""

from __future__ import annotations

from typing import Any

import click

from nvcodec.progress import ProgressEvent

from .encode_options import build_options, encode_options
from .progress import ProgressBar
from .render import EPILOG, print_json

_RAY_HELP = ("auto: join $RAY_ADDRESS or start a local Ray; local: start one; off: run in this process; or a "
             "cluster ADDRESS. Without Ray installed, auto and local run the jobs one after another here.")


def _ray_options(fn: Any) -> Any:
    for option in reversed([
        click.option("--ray", "ray", default="auto", show_default=True, metavar="auto|local|off|ADDRESS", help=_RAY_HELP),
        click.option("--workers", type=int, metavar="N", help="At most N jobs at once (default: what Ray's resources allow)."),
        click.option("--cpus-per-job", type=float, default=1.0, show_default=True, help="Ray CPUs per job (torch threads)."),
        click.option("--gpus-per-job", type=float, default=0.0, show_default=True, help="Ray GPUs per job, e.g. 0.5."),
    ]):
        fn = option(fn)
    return fn


class _Reporter:
    """Prints the runner line on stderr (always) and feeds the overall bar (terminal only)."""

    def __init__(self) -> None:
        self.bar = ProgressBar()

    def __call__(self, event: ProgressEvent) -> None:
        if "note" in event.info:
            self.bar.close()
            click.echo(f"nvcodec: {event.info['note']}", err=True)
            return
        self.bar(event)

    def close(self) -> None:
        self.bar.close()


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


@click.command(epilog=EPILOG)
@click.argument("source", metavar="IN_DIR_OR_LIST", type=click.Path())
@click.argument("out_dir", type=click.Path(file_okay=False))
@encode_options
@click.option("--tasks", "tasks_", metavar="T1,T2", help="Attach these tasks to every output (teacher: its input).")
@click.option("--weights", help="Weights for --tasks (PATH, ID or 'random').")
@click.option("--top-k", type=float, default=0.10, show_default=True, help="Pairs attach trains (see `attach`).")
@click.option("--attach-epochs", type=int, default=30, show_default=True, help="Adapter epochs at attach.")
@_ray_options
@click.option("--force", is_flag=True, help="Encode every input again, even when its output verifies.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest (rows and summary) on stdout.")
def batch(source: str, out_dir: str, tasks_: str | None, weights: str | None, top_k: float, attach_epochs: int,
          ray: str, workers: int | None, cpus_per_job: float, gpus_per_job: float, force: bool, as_json: bool,
          **kwargs: Any) -> None:
    """Encode every video of a folder (recursive) or a list (PATH[,A:B] rows) into OUT_DIR, one Ray task each.

    Re-running is safe: outputs that verify are skipped (or only get missing --tasks), interrupted
    encodes resume from their checkpoint, failed inputs are tried again. OUT_DIR/manifest.json
    records every input (status, bytes, bpp, PSNR, encode seconds, tasks, error). Exit code: 0
    when every input succeeded, else the failed inputs' code (1 when they differ).
    """
    from nvcodec.jobs import batch as do_batch

    opts = build_options(kwargs)
    attach_options = {"weights": weights, "top_k": top_k, "epochs": attach_epochs}
    reporter = _Reporter()
    try:
        manifest = do_batch(source, out_dir, opts, tasks=_split(tasks_), attach_options=attach_options, ray=ray,
                            workers=workers, cpus_per_job=cpus_per_job, gpus_per_job=gpus_per_job, force=force,
                            progress=reporter)
    finally:
        reporter.close()
    s = manifest["summary"]
    if as_json:
        print_json(manifest)
    else:
        for r in manifest["jobs"]:
            if r["status"] == "failed":
                click.echo(f"FAILED {r['input']}: exit {r['exit_code']}: {r['error']}")
        rate = f", {s['videos_per_hour']:.1f} videos/hour" if s["videos_per_hour"] else ""
        click.echo(f"{s['inputs']} inputs: {s['encoded']} encoded, {s['attached']} attached, {s['skipped']} skipped, "
                   f"{s['failed']} failed in {s['seconds']:.1f} s{rate}; manifest {manifest['manifest']}")
    click.get_current_context().exit(s["exit_code"])


@click.command("batch-infer", epilog=EPILOG)
@click.argument("folder", metavar="OUT_DIR", type=click.Path(file_okay=False))
@click.option("--task", "task", required=True, help="Task name(s), comma separated.")
@click.option("-o", "--output", metavar="JSONL", help="Predictions file (default: OUT_DIR/predictions.jsonl).")
@click.option("--frames", metavar="A:B", help="Frames A..B-1 of every file (half-open).")
@click.option("--weights", help="PATH, ID, or 'random' (defaults to what attach recorded).")
@click.option("--threshold", type=float, default=None,
              help="Detection score threshold (default: the task's own, e.g. detr 0.7, nanodet 0.35).")
@click.option("--device", default="auto", show_default=True)
@_ray_options
@click.option("--json", "as_json", is_flag=True, help="Print the summary (a row per file) on stdout.")
def batch_infer(folder: str, task: str, output: str | None, frames: str | None, weights: str | None,
                threshold: float | None,
                device: str, ray: str, workers: int | None, cpus_per_job: float, gpus_per_job: float,
                as_json: bool) -> None:
    """Run tasks on every .nvp under OUT_DIR (one Ray task per file) into one JSONL of predictions.

    One line per file, task and frame: file, task, frame, predictions, weights_random; a file that
    fails gets one line with its error and exit code, and the others go on.
    """
    from nvcodec.jobs import batch_infer as do_batch_infer
    from nvcodec.codec.frames import parse_range

    reporter = _Reporter()
    try:
        report = do_batch_infer(folder, _split(task), output=output, frames=parse_range(frames), weights=weights,
                                threshold=threshold, device=device, ray=ray, workers=workers,
                                cpus_per_job=cpus_per_job, gpus_per_job=gpus_per_job, progress=reporter)
    finally:
        reporter.close()
    s = report["summary"]
    if as_json:
        print_json(report)
    else:
        for r in report["files"]:
            if r["status"] != "ok":
                click.echo(f"FAILED {r['file']}: exit {r['exit_code']}: {r['error']}")
        click.echo(f"{s['files']} files: {s['ok']} ok, {s['failed']} failed, {s['frames']} frames in {s['seconds']:.1f} s; "
                   f"{s['lines']} lines in {report['output']}")
    click.get_current_context().exit(s["exit_code"])
