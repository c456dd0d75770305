"""The `nvcodec` command: a thin click layer over the nvcodec Python API."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from nvcodec.errors import FormatError, NvcodecError, UsageError, as_nvcodec_error

from .batch import batch, batch_infer
from .bench import bench
from .encode_options import build_options, encode_options
from .progress import ProgressBar
from .serve import serve
from .render import EPILOG, print_json, render_attach, render_infer, render_info, render_tasks

# Commands that never load torch: the OpenMP set-up (and its CPU sampling) is skipped for them.
NO_TORCH_COMMANDS = frozenset({"info", "verify"})


class TaskHelpOption(click.Option):
    """An option whose help names the declared tasks: ``{tasks}`` and ``{zero_shot}`` are filled in from
    the task registry when help is shown (so `--help` follows the declarations, and startup stays light)."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        text = self.help
        if text and "{" in text:
            from nvcodec.models.registry import task_names, zero_shot_names

            self.help = text.format(tasks=", ".join(task_names()), zero_shot=", ".join(zero_shot_names()))
        try:
            return super().get_help_record(ctx)
        finally:
            self.help = text


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}, epilog=EPILOG)
@click.version_option(package_name="nvcodec", prog_name="nvcodec")
@click.pass_context
def app(ctx: click.Context) -> None:
    """Store videos as implicit neural representations (.nvp) and run ML tasks straight from them."""
    if ctx.invoked_subcommand in NO_TORCH_COMMANDS:
        return  # no torch, no OpenMP: nothing to set up (and no 16 ms CPU sampling)
    from nvcodec.threads import configure_environment

    configure_environment()  # before torch loads: threads follow the usable CPUs; passive OpenMP waits when CPUs are taken


@app.command(epilog=EPILOG)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report.")
def info(file: str, as_json: bool) -> None:
    """Describe an .nvp file (reads only its index and small metadata sections)."""
    from nvcodec.codec.info import describe

    _require_file(file)
    report = describe(file)
    print_json(report) if as_json else click.echo(render_info(report))


@app.command(epilog=EPILOG)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report.")
def verify(file: str, as_json: bool) -> None:
    """Check every checksum and the whole-file integrity of an .nvp file (exit 0 when intact, 3 when damaged).

    A damaged file lists every damaged section (live or superseded) with its byte range.
    """
    from nvcodec.container import check_nvp, describe_problem

    _require_file(file)
    report = {"file": file, **check_nvp(file)}
    if as_json:
        print_json(report)
    elif report["ok"]:
        click.echo(f"{file}: OK ({report['sections']} sections, {report['bytes']} bytes checked)")
    else:
        click.echo(f"{file}: DAMAGED ({report['problem_count']} problem(s))")
        for p in report["problems"]:
            click.echo(f"  {describe_problem(p)}")
    if not report["ok"]:
        first = describe_problem(report["problems"][0])
        more = f" and {report['problem_count'] - 1} more" if report["problem_count"] > 1 else ""
        raise FormatError(f"{file} is damaged: {first}{more}")


@app.command(epilog=EPILOG)
@click.argument("input", type=click.Path())
@click.argument("output", type=click.Path(dir_okay=False))
@encode_options
@click.option("--resume", is_flag=True, help="Continue an interrupted encode from its checkpoint (OUTPUT.ckpt).")
@click.option("--tasks", "tasks_", metavar="T1,T2", cls=TaskHelpOption,
              help="Attach these tasks right after encoding ({tasks}).")
@click.option("--weights", help="Weights for --tasks (PATH, ID or 'random').")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
def encode(input: str, output: str, resume: bool, tasks_: str | None, weights: str | None, force: bool, as_json: bool,
           **kwargs: Any) -> None:
    """Encode a video (file, PNG folder or .y4m) as an INR into an .nvp file."""
    from nvcodec.codec.encode import encode as do_encode

    device, stream = kwargs["device"], kwargs["stream"]
    task_names = _split_tasks(tasks_) if tasks_ else []
    if task_names:
        from nvcodec.models.registry import get_task

        specs = [get_task(t) for t in task_names]
    opts = build_options(kwargs, resume=resume)
    bar = ProgressBar()
    try:
        summary = do_encode(input, output, opts, overwrite=force or resume, progress=bar)
    finally:
        bar.close()
    _warn(summary)
    if task_names:
        from nvcodec.adapt.attach import attach

        summary["tasks"] = []
        for spec in specs:
            bar = ProgressBar()
            try:
                summary["tasks"].append(attach(output, spec, weights=weights, device=device, source=input,
                                               source_stream=stream, progress=bar))
            finally:
                bar.close()
            _warn(summary["tasks"][-1])
    if as_json:
        print_json(summary)
    else:
        click.echo(f"{summary['output']}: {summary['frames']} frames {summary['width']}x{summary['height']}, "
                   f"{summary['bytes']:,} bytes, {summary['bpp']:.4f} bpp, PSNR {summary['psnr']:.2f} dB pooled "
                   f"(per-frame mean {summary['psnr_frame_mean']:.2f}, min {summary['psnr_min']:.2f}), SSIM {summary['ssim']:.4f}, {summary['params'] / 1e6:.3f}M params, "
                   f"{summary['encode_seconds']:.1f} s on {summary['device']} ({summary['dtype']}), "
                   f"stopped by {'/'.join(sorted(set(summary['stopped_by'])))} after "
                   f"{'+'.join(map(str, summary['epochs']))} epoch(s)")
        for t in summary.get("tasks", []):
            click.echo(render_attach(t))


@app.command(epilog=EPILOG)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", metavar="PATH", help="out.mp4 (H.264), out.y4m (lossless) or DIR/ (PNG frames).")
@click.option("--frames", metavar="A:B", help="Frames A..B-1 only (half-open).")
@click.option("--sheet", metavar="PNG", help="Write a contact sheet (with --layer: feature maps; with --compare: side by side).")
@click.option("--compare", metavar="ORIGINAL", help="Per-frame PSNR against the original video.")
@click.option("--layer", type=int, metavar="K", help="With --sheet: show decoder block K's feature maps.")
@click.option("--stream", type=int, help="Video stream of ORIGINAL (default: the one recorded at encode).")
@click.option("--device", default="auto", show_default=True)
@click.option("--force", is_flag=True, help="Replace existing output files.")
@click.option("--json", "as_json", is_flag=True)
def view(file: str, output: str | None, frames: str | None, sheet: str | None, compare: str | None, layer: int | None,
         stream: int | None, device: str, force: bool, as_json: bool) -> None:
    """Reconstruct pixels: write a video, PNG frames, a contact sheet, or compare with the original."""
    import nvcodec
    from nvcodec.codec import export
    from nvcodec.codec.frames import parse_range

    if not (output or sheet or compare):
        raise UsageError("nothing to do: give -o PATH, --sheet PNG or --compare ORIGINAL")
    if layer is not None and not sheet:
        raise UsageError("--layer K needs --sheet PNG")
    if layer is not None and compare:
        raise UsageError("--layer and --compare do not go together")
    for path in (output, sheet):
        if path and os.path.isfile(path) and not force:
            raise UsageError(f"{path} exists: pass --force to replace it")
    _require_file(file)
    rng = parse_range(frames)
    report: dict[str, Any] = {"file": file}
    with nvcodec.open(file) as video:
        if output:
            report["output"] = export.export_frames(video, output, frames=rng, device=device)
        if compare:
            report["compare"] = export.compare(video, compare, frames=rng, sheet=sheet, device=device, stream=stream)
        elif sheet and layer is not None:
            report["sheet"] = export.layer_sheet(video, sheet, layer, frames=rng, device=device)
        elif sheet:
            report["sheet"] = export.frame_sheet(video, sheet, frames=rng, device=device)
    if as_json:
        print_json(report)
        return
    if "output" in report:
        a, b = report["output"]["frames"]
        click.echo(f"wrote {output} (frames {a}:{b})")
    if "compare" in report:
        c = report["compare"]
        click.echo(f"PSNR vs {compare}: {c['psnr']:.2f} dB pooled, per-frame mean {c['psnr_frame_mean']:.2f} dB, "
                   f"min {c['psnr_min']:.2f} dB over frames {c['frames'][0]}:{c['frames'][1]}")
        click.echo("per frame: " + " ".join(f"{p:.2f}" for p in c["psnr_per_frame"]))
        if c.get("sheet"):
            click.echo(f"wrote {c['sheet']}")
    if "sheet" in report:
        click.echo(f"wrote {report['sheet']['sheet']}")


@app.command(epilog=EPILOG)
@click.option("--json", "as_json", is_flag=True)
def tasks(as_json: bool) -> None:
    """List the tasks nvcodec can serve from an .nvp file."""
    from nvcodec.models.registry import list_tasks

    rows = [t.describe() for t in list_tasks()]
    print_json(rows) if as_json else click.echo(render_tasks(rows))


@app.command(epilog=EPILOG)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--task", "task", required=True, cls=TaskHelpOption, help="Task name: {tasks} (see `nvcodec tasks`).")
@click.option("--weights", help="PATH, ID, or 'random' (pipeline check only; every output says so).")
@click.option("--search", type=click.Choice(["lstsq", "cka", "exhaustive"]), default="lstsq", show_default=True,
              help="Rank pairs by least-squares adapter fidelity, by CKA, or train every pair.")
@click.option("--top-k", type=float, default=0.10, show_default=True,
              help="Pairs to train: a fraction below 1, or a count (2 = the best two).")
@click.option("--kinds", default="linear,patch,bottleneck", show_default=True,
              help="Adapter kinds to try: linear, conv3x3, dw3x3, bottleneck, patch.")
@click.option("--distill", type=float, default=1.0, show_default=True,
              help="Weight of the task-output distillation loss (0: feature loss only).")
@click.option("--max-cost", type=float, default=0.5, show_default=True,
              help="Consider only pairs costing at most this share of the pixel path's GFLOPs (0: no cap).")
@click.option("--source", type=click.Path(exists=True), help="The original video: its frames become the teacher.")
@click.option("--epochs", type=int, default=30, show_default=True, help="Adapter epochs (early stopping applies).")
@click.option("--frames", "sample", type=int, default=None,
              help="Frames sampled for scoring and training (default: 32 for classification, 12 for detection; "
                   "clip tasks: windows, default 6).")
@click.option("--strict", is_flag=True,
              help="Fail (exit 1, nothing appended) when the best fidelity is below the floor (0.6) or CKA is 0 for every pair.")
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def attach(file: str, task: str, weights: str | None, search: str, top_k: float, kinds: str, distill: float,
           max_cost: float, source: str | None, epochs: int, sample: int | None, strict: bool, device: str,
           as_json: bool) -> None:
    """Attach a task: score INR-block/injection-point pairs, train adapters for the best, append the winner."""
    from nvcodec.adapt.attach import attach as do_attach

    _require_file(file)
    bar = ProgressBar()
    try:
        report = do_attach(file, task, weights=weights, search=search, top_k=top_k, epochs=epochs,
                           sample_frames=sample, kinds=_split_tasks(kinds), distill=distill, max_cost=max_cost,
                           source=source, device=device, strict=strict, progress=bar)
    finally:
        bar.close()
    _warn(report)
    print_json(report) if as_json else click.echo(render_attach(report, table=True))


@app.command(epilog=EPILOG)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--task", "task", required=True, cls=TaskHelpOption,
              help="Task name(s), comma separated: resnet50,detr. Tasks: {tasks}.")
@click.option("--frames", metavar="A:B", help="Frames A..B-1 only (half-open).")
@click.option("--weights", help="PATH, ID, or 'random' (defaults to what attach recorded).")
@click.option("--threshold", type=float, default=None,
              help="Detection score threshold (default: the task's own, e.g. detr 0.7, nanodet 0.35).")
@click.option("--compare-pixels", is_flag=True, help="Also run the pixel path and report agreement.")
@click.option("--compare-source", "source", type=click.Path(exists=True), metavar="ORIGINAL",
              help="Also report agreement with the full backbone on the original video's frames.")
@click.option("--beams", type=int, default=1, show_default=True,
              help="Beam search width for captions (1: greedy); other tasks ignore it.")
@click.option("--labels", "labels_file", metavar="FILE", cls=TaskHelpOption,
              help="Zero-shot tasks ({zero_shot}): classify over these labels, one per line.")
@click.option("--window", type=click.IntRange(min=1), metavar="N",
              help="Clip tasks: video frames per window (default: the model's span, e.g. 64 for 8x8).")
@click.option("--stride", type=click.IntRange(min=1), metavar="N",
              help="Clip tasks: video frames between window starts (default: --window).")
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def infer(file: str, task: str, frames: str | None, weights: str | None, threshold: float | None, compare_pixels: bool,
          source: str | None, beams: int, labels_file: str | None, window: int | None, stride: int | None,
          device: str, as_json: bool) -> None:
    """Run tasks from the INR: partial decode, adapter, backbone tail, head. No pixels."""
    from nvcodec.codec.frames import parse_range
    from nvcodec.route.infer import infer as do_infer
    from nvcodec.models.labels import read_labels

    _require_file(file)
    labels = read_labels(labels_file) if labels_file is not None else None
    report = do_infer(file, _split_tasks(task), frames=parse_range(frames), weights=weights, threshold=threshold,
                      compare_pixels=compare_pixels, source=source, device=device, beams=beams, labels=labels,
                      window=window, stride=stride)
    print_json(report) if as_json else click.echo(render_infer(report))


@app.command(epilog=EPILOG)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--task", "task", required=True, help="An attached task (see `nvcodec info`).")
@click.option("--source", type=click.Path(exists=True), help="The original video: reconstruction target and teacher.")
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("--inr-lr", type=float, default=1e-5, show_default=True)
@click.option("--adapter-lr", type=float, default=1e-4, show_default=True)
@click.option("--weights-loss", "loss_weights", default="1.0,0.5,0.2", show_default=True,
              help="Reconstruction, task and feature loss weights.")
@click.option("--time-budget", type=float, metavar="SECONDS", help="Stop fine-tuning after this long.")
@click.option("--weights", help="Task weights (PATH, ID or 'random'); default: what attach used.")
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def tune(file: str, task: str, source: str | None, epochs: int, inr_lr: float, adapter_lr: float, loss_weights: str,
         time_budget: float | None, weights: str | None, device: str, as_json: bool) -> None:
    """Fine-tune the INR together with a task's adapter; appends a new generation at the same bitrate."""
    from nvcodec.adapt.tune import tune as do_tune

    _require_file(file)
    try:
        rec, tsk, feat = (float(x) for x in loss_weights.split(","))
    except ValueError:
        raise UsageError("--weights-loss takes three numbers: reconstruction,task,feature") from None
    bar = ProgressBar()
    try:
        r = do_tune(file, task, source=source, epochs=epochs, inr_lr=inr_lr, adapter_lr=adapter_lr, recon_weight=rec,
                    task_weight=tsk, feature_weight=feat, time_budget=time_budget, weights=weights, device=device,
                    progress=bar)
    finally:
        bar.close()
    if as_json:
        print_json(r)
        return
    ref = "the original video" if r["reference"] == "source" else "the INR's frames before tuning"
    click.echo(f"tuned {file} for {task}: PSNR {r['psnr_before']:.2f} -> {r['psnr_after']:.2f} dB (vs {ref}), "
               f"task fidelity {r['fidelity_before']:.4f} -> {r['fidelity_after']:.4f}, {r['seconds']:.1f} s")
    for name, fid in r["refitted_tasks"].items():
        click.echo(f"  re-fitted {name}: fidelity {fid:.4f}")
    click.echo("the previous INR stays in the file until `nvcodec compact`")


@app.command(epilog=EPILOG)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
def compact(file: str, as_json: bool) -> None:
    """Rewrite a file with only its live sections (drops superseded generations; atomic)."""
    from nvcodec.container import compact_nvp

    _require_file(file)
    r = {"file": file, **compact_nvp(file)}
    print_json(r) if as_json else click.echo(f"{file}: {r['bytes_before']:,} -> {r['bytes_after']:,} bytes")


app.add_command(bench)
app.add_command(batch)
app.add_command(batch_infer)
app.add_command(serve)


def _warn(report: dict) -> None:
    for w in report.get("warnings", []):
        click.echo(f"nvcodec: warning: {w}", err=True)


def _split_tasks(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise UsageError("--task needs at least one task name")
    return names


def _require_file(path: str) -> None:
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file")
    if os.path.isdir(path):
        raise UsageError(f"{path}: is a directory")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: one-line errors and documented exit codes, never a traceback."""
    try:
        rv = app.main(args=argv, prog_name="nvcodec", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("nvcodec: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except NvcodecError as exc:
        click.echo(f"nvcodec: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("nvcodec: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    except Exception as exc:  # last line of defence: one line, not a traceback
        err = as_nvcodec_error(exc)
        if err is not None:
            click.echo(f"nvcodec: error: {err}", err=True)
            sys.exit(err.exit_code)
        if os.environ.get("NVCODEC_DEBUG"):
            raise
        click.echo(f"nvcodec: internal error: {type(exc).__name__}: {exc} (set NVCODEC_DEBUG=1 for a traceback)", err=True)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
