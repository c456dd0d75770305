"""`nvcodec bench`: nvcodec against the codec pipeline on one video (registered by cli/main.py)."""

from __future__ import annotations

import os
import sys

import click

from nvcodec.errors import UsageError

from .progress import ProgressBar
from .render import EPILOG, print_json




@click.command(epilog=EPILOG)
@click.argument("input", type=click.Path())
@click.option("--task", "task", required=True, help="Task name(s), comma separated: resnet50 or resnet50,detr.")
@click.option("--frames", metavar="A:B", help="Frames A..B-1 only (default: the whole video; on a CPU use e.g. 0:24).")
@click.option("--codecs", default="x264,x265", show_default=True, help="Codecs to compare: x264, x265, av1, vp9.")
@click.option("--bpps", default="0.02,0.05,0.1", show_default=True,
              help="nvcodec rate points (target bpp); 'none' for the main point only.")
@click.option("--params", "params_", metavar="N", help="Main nvcodec encode by size (e.g. 300k) instead of the top --bpps.")
@click.option("--bpp", type=float, help="Main nvcodec encode at this target bpp instead of the top --bpps.")
@click.option("--epochs", type=int, help="Fitting epochs per nvcodec encode.")
@click.option("--time-budget", type=float, metavar="SECONDS", help="Fitting time per nvcodec encode (default 60 s without --epochs).")
@click.option("--kind", type=click.Choice(["hnerv", "nerv", "hinerv"]), default="hinerv", show_default=True)
@click.option("--repeat", type=int, default=5, show_default=True, help="Timed passes; figures are medians.")
@click.option("--warmup", type=int, default=1, show_default=True, help="Untimed passes before timing.")
@click.option("--sample", type=int, metavar="N", help="Frames per task pass (evenly spaced; default: all frames).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--threads", type=int, help="torch and FFmpeg decoder threads (default: torch's default).")
@click.option("--weights", help="PATH, ID, 'random' or 'random-tiny' (random: pipeline check only; outputs say so).")
@click.option("--attach-epochs", type=int, default=30, show_default=True, help="Adapter epochs at attach.")
@click.option("--attach-frames", type=int, help="Frames sampled by attach (default: attach's).")
@click.option("--threshold", type=float, default=None,
              help="Detection score threshold (default: the task's own, e.g. detr 0.7, nanodet 0.35).")
@click.option("--random-access", "random_access", type=int, default=5, show_default=True,
              help="Frame positions for the random-access test.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--keep", metavar="DIR", help="Keep the encoded files (.nvp, codec files) in DIR.")
@click.option("--plot", metavar="DIR", help="Write PNG charts (rate-distortion, rate-accuracy, latency) to DIR.")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON on stdout.")
def bench(input: str, task: str, frames: str | None, codecs: str, bpps: str, params_: str | None, bpp: float | None,
          epochs: int | None, time_budget: float | None, kind: str, repeat: int, warmup: int, sample: int | None,
          device: str, threads: int | None, weights: str | None, attach_epochs: int, attach_frames: int | None,
          threshold: float | None, random_access: int, seed: int, keep: str | None, plot: str | None, as_json: bool) -> None:
    """Compare nvcodec with the codec pipeline on INPUT: rate-distortion, rate-accuracy, latency, FLOPs, random access.

    Encodes INPUT as .nvp and as H.264 (+ HEVC/AV1) at matched bpp, attaches the tasks, then times
    per frame: H.264 decode + full backbone, INR full decode + full backbone, and nvcodec's partial
    decode + adapter + backbone tail. Pretrained weights are used unless --weights says otherwise.
    """
    from nvcodec.bench.rate import parse_bpps, parse_codecs
    from nvcodec.bench.report import render_report
    from nvcodec.bench.run import BenchOptions, run_bench
    from nvcodec.codec.encode import parse_size
    from nvcodec.codec.frames import parse_range

    if not os.path.exists(input):
        raise UsageError(f"{input}: no such file or folder")
    names = [t.strip() for t in task.split(",") if t.strip()]
    opts = BenchOptions(tasks=names, frames=parse_range(frames), codecs=parse_codecs(codecs), bpps=parse_bpps(bpps),
                        params=parse_size(params_) if params_ else None, bpp=bpp, epochs=epochs,
                        time_budget=time_budget, kind=kind, repeat=repeat, warmup=warmup, device=device,
                        weights=weights, threads=threads, sample=sample, attach_epochs=attach_epochs,
                        attach_frames=attach_frames, random_access=random_access, threshold=threshold, seed=seed,
                        keep=keep)
    if plot:
        from nvcodec.bench.plots import require_matplotlib

        require_matplotlib()
    bar = ProgressBar(enabled=False) if as_json and not sys.stderr.isatty() else ProgressBar()
    try:
        report = run_bench(input, opts, progress=bar)
    finally:
        bar.close()
    if plot:
        from nvcodec.bench.plots import write_plots

        report["plots"] = write_plots(report, plot)
    if as_json:
        print_json(report)
    else:
        click.echo(render_report(report))
