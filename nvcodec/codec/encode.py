"""`encode()`: a video in, an `.nvp` file out (segments, fitting, quantization, container)."""

from __future__ import annotations

import functools
import os
import shutil
import socket
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone

import numpy as np
import torch

from .. import __version__
from ..container import NvpReader, Section, SectionKind, pack_msgpack, write_nvp
from ..errors import DegenerateFitError, NoSpaceError, NvcodecError, UsageError, is_no_space, no_space_as_error
from ..inr.budget import BudgetTooSmallError
from ..inr.fit import fit
from ..inr.metrics import pool_quality
from ..inr.plan import INRConfig, plan_config
from ..inr.sampling import SAMPLINGS
from ..inr.quant import MAX_WIDEN
from ..inr.temporal import wants_fine_grid
from ..progress import ProgressCallback, emit
from ..threads import MAX_THREADS, use_threads
from ..video import VideoInfo, probe_video, read_frames
from .frames import resolve_range
from .meta import VideoMetadata, decode_values, max_decode_values, max_model_params
from .ratecap import capped_config, coded_bytes, model_byte_limit
from .serialize import inr_sections, section_codec
from .video import resolve_device

KINDS = ("hnerv", "nerv", "hinerv")
# The kind `nvcodec encode` uses when none is given: hinerv since it won benchmarks/rd.py against hnerv
# at equal epochs and equal CPU time on every shared clip (README, "Codec results").
DEFAULT_KIND = "hinerv"
# Per kind: (weight bits, embedding bits, QAT fraction, per-tensor bit allocation) when not given. The
# older kinds keep what they always used (post-training 8/6-bit quantization); hinerv trains its last
# 30% at 6/5 bits with bits allocated per tensor (benchmarks/results/RATE_LEVERS.md).
KIND_PRESETS = {"hnerv": (8, 6, 0.0, False), "nerv": (8, 6, 0.0, False), "hinerv": (6, 5, 0.3, True)}
# Frames per optimisation step when not given (`--frames-per-step`), per kind: see the README's
# "Fitting speed" for the measurements behind them.
KIND_FRAMES_PER_STEP = {"hnerv": 1, "nerv": 1, "hinerv": 1}
# Which frames each epoch trains on when not given (`--sampling`, `inr.sampling`): hinerv measures the clip
# and draws frames by their latest loss where their difficulty is uneven (benchmarks/results/RD.md, variant
# `uniform`); the older kinds keep uniform epochs.
KIND_SAMPLING = {"hnerv": "uniform", "nerv": "uniform", "hinerv": "auto"}
MAX_FRAMES_PER_STEP = 64
LOSSES = ("l2", "l1+ssim")
FINE_GRID_MODES = ("auto", "on", "off")


@dataclass
class EncodeOptions:
    """Every knob of `encode()`; the defaults are what `nvcodec encode` uses."""

    kind: str = DEFAULT_KIND
    params: float | None = None
    bpp: float | None = None
    psnr: float | None = 33.0
    epochs: int | None = None
    time_budget: float | None = None
    loss: str = "l2"
    lr: float | None = None
    seed: int = 0
    device: str = "auto"
    amp: bool | None = None
    stream: int | None = None
    frames: tuple[int | None, int | None] | None = None
    segment_frames: int | None = None
    weight_bits: int | None = None
    embed_bits: int | None = None
    qat: float | None = None
    prune: float = 0.0
    bit_alloc: bool | None = None
    frames_per_step: int | None = None
    entropy: str = "rans"
    fine_grid: str = "auto"
    sampling: str | None = None
    resume: bool = False
    threads: int | None = None
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        """Raise UsageError for values that cannot work."""
        if self.kind not in KINDS:
            raise UsageError(f"--kind must be one of {', '.join(KINDS)}")
        if self.loss not in LOSSES:
            raise UsageError(f"--loss must be one of {', '.join(LOSSES)}")
        if self.params is not None and self.bpp is not None:
            raise UsageError("give --params or --bpp, not both")
        if self.params is not None and not 1e3 <= self.params <= 1e9:
            raise UsageError("--params must be between 1K and 1G")
        if self.bpp is not None and not 0 < self.bpp <= 24:
            raise UsageError("--bpp must be in (0, 24]")
        if self.epochs is not None and self.epochs < 1:
            raise UsageError("--epochs must be at least 1")
        if self.time_budget is not None and self.time_budget <= 0:
            raise UsageError("--time-budget must be positive (seconds)")
        if self.psnr is not None and not 0 < self.psnr < 100:
            raise UsageError("--psnr must be in (0, 100) dB")
        if self.segment_frames is not None and self.segment_frames < 1:
            raise UsageError("--segment-frames must be at least 1")
        if self.kind not in KINDS:
            raise UsageError(f"--kind must be one of {', '.join(KINDS)}")
        r = self.resolved()
        if not 2 <= r.weight_bits <= 16 or not 2 <= r.embed_bits <= 16:
            raise UsageError("--weight-bits and --embed-bits must be between 2 and 16")
        r.check_rate_options()

    def resolved(self) -> "EncodeOptions":
        """A copy with the kind's codec preset (`KIND_PRESETS`) filling weight_bits, embed_bits, qat and
        bit_alloc where they are None (the preset's bit allocation only where QAT runs: it happens when
        QAT starts), and the kind's frames per step and sampling."""
        wb, eb, qat, alloc = KIND_PRESETS[self.kind]
        fps = KIND_FRAMES_PER_STEP[self.kind]
        qat = qat if self.qat is None else self.qat
        return replace(self, weight_bits=wb if self.weight_bits is None else self.weight_bits,
                       embed_bits=eb if self.embed_bits is None else self.embed_bits, qat=qat,
                       bit_alloc=(alloc and qat > 0.0) if self.bit_alloc is None else self.bit_alloc,
                       frames_per_step=fps if self.frames_per_step is None else self.frames_per_step,
                       sampling=KIND_SAMPLING[self.kind] if self.sampling is None else self.sampling)

    def check_rate_options(self) -> None:
        """UsageError for QAT, pruning and bit-allocation settings that cannot work (resolved options)."""
        if not 0.0 <= self.qat <= 1.0:
            raise UsageError("--qat must be a fraction in [0, 1]")
        if not 0.0 <= self.prune < 0.9 or (self.prune > 0.0 and self.qat == 0.0):
            raise UsageError("--prune must be in [0, 0.9) and needs --qat above 0")
        if self.bit_alloc and self.qat == 0.0:
            raise UsageError("--bit-alloc needs --qat above 0")
        if not isinstance(self.frames_per_step, int) or not 1 <= self.frames_per_step <= MAX_FRAMES_PER_STEP:
            raise UsageError(f"--frames-per-step must be between 1 and {MAX_FRAMES_PER_STEP}")
        if self.threads is not None and not 1 <= self.threads <= MAX_THREADS:
            raise UsageError(f"--threads must be between 1 and {MAX_THREADS}")
        if self.entropy not in ("rans", "none"):
            raise UsageError("--entropy must be rans or none")
        if self.fine_grid not in FINE_GRID_MODES:
            raise UsageError(f"--fine-grid must be one of {', '.join(FINE_GRID_MODES)}")
        if self.sampling not in SAMPLINGS:
            raise UsageError(f"--sampling must be one of {', '.join(SAMPLINGS)}")
        if self.epochs is None and self.time_budget is None and self.psnr is None:
            raise UsageError("nothing would stop the encode: give --psnr, --epochs or --time-budget")


def parse_size(text: str) -> float:
    """Parse a parameter count like `1.5M`, `300k`, `2e6`."""
    t = text.strip().lower()
    mult = {"k": 1e3, "m": 1e6, "g": 1e9}.get(t[-1:], 1.0)
    try:
        return float(t[:-1] if t[-1:] in "kmg" else t) * mult
    except ValueError:
        raise UsageError(f"bad size {text!r}: use a number like 1.5M or 300k") from None


def check_output_path(path: str, *, overwrite: bool) -> None:
    """Fail early, before hours of fitting, when the output cannot be written."""
    parent = os.path.dirname(os.path.abspath(path)) or "."
    if os.path.isdir(path):
        raise UsageError(f"{path}: is a directory")
    if os.path.exists(path) and not overwrite:
        raise UsageError(f"{path} exists: pass --force to replace it (the old file stays intact until the new one is complete)")
    if not os.path.isdir(parent):
        raise UsageError(f"{path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{path}: directory {parent} is not writable")


def _segments(start: int, stop: int, segment_frames: int | None) -> list[tuple[int, int]]:
    n = segment_frames or (stop - start)
    return [(a, min(a + n, stop)) for a in range(start, stop, n)]


def _segment_params(opts: EncodeOptions, seg_frames: int, total_frames: int) -> float | None:
    if opts.params is None:
        return None
    return opts.params * seg_frames / total_frames


def _segment_checkpoint_dir(output: str) -> str:
    return output + ".ckpt"


def _segment_done_path(ckpt_dir: str, index: int) -> str:
    return os.path.join(ckpt_dir, f"seg{index}.nvp")


def encode(input_path: str, output_path: str, options: EncodeOptions | None = None, *,
           overwrite: bool = False, progress: ProgressCallback | None = None) -> dict:
    """Fit an INR to `input_path` and write `output_path`; returns the encode summary dict.

    Torch uses `opts.threads` CPU threads (default: the usable CPUs, see `nvcodec.threads`)."""
    opts = options or EncodeOptions()
    opts.validate()
    opts = opts.resolved()
    with use_threads(opts.threads) as threads:
        summary = _encode(input_path, output_path, opts, overwrite=overwrite, progress=progress)
    summary["threads"] = threads
    return summary


def _encode(input_path: str, output_path: str, opts: EncodeOptions, *, overwrite: bool,
            progress: ProgressCallback | None) -> dict:
    output_path = os.fspath(output_path)
    check_output_path(output_path, overwrite=overwrite)
    device = resolve_device(opts.device)
    t0 = time.monotonic()
    deadline = None if opts.time_budget is None else t0 + opts.time_budget

    info = probe_video(input_path, stream=opts.stream)
    start, stop = resolve_range(opts.frames, info.frames)
    total = stop - start
    spans = _segments(start, stop, opts.segment_frames)
    for a, b in spans:
        _plan(opts, info, b - a, total, opts.kind == "hinerv" and opts.fine_grid == "on")
    ckpt_dir = _segment_checkpoint_dir(output_path)
    if opts.resume:
        if not os.path.isdir(ckpt_dir):
            raise UsageError(f"--resume: no checkpoint found at {ckpt_dir} (nothing to resume)")
    elif os.path.isdir(ckpt_dir):
        shutil.rmtree(ckpt_dir)
    with no_space_as_error(ckpt_dir):
        os.makedirs(ckpt_dir, exist_ok=True)

    try:
        sections: list[Section] = []
        seg_reports = []
        multi = len(spans) > 1
        for i, (a, b) in enumerate(spans):
            prefix = f"seg{i}/" if multi else ""
            done = _segment_done_path(ckpt_dir, i)
            if opts.resume and os.path.exists(done):
                seg_sections, report = _load_done_segment(done)
            else:
                seg_sections, report = _encode_segment(input_path, opts, info, a, b, total, prefix, ckpt_dir, i,
                                                       len(spans), device, progress, deadline, stop - a)
                _save_done_segment(done, seg_sections, report)
            sections += seg_sections
            seg_reports.append(report)

        meta = VideoMetadata(
            width=info.width, height=info.height, frames=total, fps=info.fps,
            fps_num=info.fps_num, fps_den=info.fps_den, source_codec=info.codec, pix_fmt=info.pix_fmt,
            color_space=info.color_space, color_range=info.color_range,
            color_primaries=info.color_primaries, color_trc=info.color_trc,
            source_name=os.path.basename(os.fspath(input_path))[:256], source_frames=(start, stop),
            source_bit_rate=info.bit_rate if info.bit_rate and info.bit_rate > 0 else None,
        )
        codec = section_codec(opts.entropy)
        sections.insert(0, Section("video", SectionKind.VIDEO, pack_msgpack(meta.to_dict()), codec))
        if multi:
            table = {"segments": [{"start": a - start, "stop": b - start, "prefix": f"seg{i}/"} for i, (a, b) in enumerate(spans)]}
            sections.insert(1, Section("segments", SectionKind.SEGMENTS, pack_msgpack(table), codec))

        weights = np.array([r["frames"] for r in seg_reports], dtype=np.float64)
        quality = pool_quality(seg_reports)
        psnr, psnr_min, psnr_frame_mean = quality["psnr"], quality["psnr_min"], quality["psnr_frame_mean"]
        ssim = float((np.array([r["ssim"] for r in seg_reports]) * weights).sum() / weights.sum())
        params = int(sum(r["params"] for r in seg_reports))
        encode_seconds = time.monotonic() - t0
        provenance = {
            "tool": "nvcodec", "tool_version": __version__, "torch_version": torch.__version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": socket.gethostname()[:64],
            "device": seg_reports[0]["device"], "dtype": seg_reports[0]["dtype"],
            "settings": {k: v for k, v in asdict(opts).items() if k not in ("resume", "extra", "frames", "threads")},
            "psnr": psnr, "psnr_frame_mean": psnr_frame_mean, "psnr_min": psnr_min, "ssim": ssim,
            "params": params, "encode_seconds": encode_seconds, "segments": seg_reports,
        }
        sections.append(Section("provenance", SectionKind.PROVENANCE, pack_msgpack(provenance), codec))
        write_nvp(output_path, sections)
    except DegenerateFitError as exc:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        raise _without_checkpoint(exc, ckpt_dir) from None
    except (NoSpaceError, OSError) as exc:
        if not isinstance(exc, NoSpaceError) and not is_no_space(exc):
            raise
        if not opts.resume:  # a fresh checkpoint would only hold more of what filled the disk
            shutil.rmtree(ckpt_dir, ignore_errors=True)
        if isinstance(exc, NoSpaceError):
            raise
        raise NoSpaceError(exc.filename or output_path) from None
    shutil.rmtree(ckpt_dir, ignore_errors=True)

    size = os.path.getsize(output_path)
    bpp = size * 8 / (info.width * info.height * total)
    warnings = []
    if opts.bpp is not None and bpp > opts.bpp:
        warnings.append(f"the file takes {bpp:.4f} bpp, above --bpp {opts.bpp:g}: the smallest {opts.kind} "
                        f"model for {info.width}x{info.height} frames does not fit even with a {MAX_WIDEN:g}x "
                        "coarser quantization step, so it keeps its own (ask for fewer --weight-bits, or "
                        "segments of more frames)")
    return {
        "output": output_path, "bytes": size,
        "bpp": bpp, "target_bpp": opts.bpp,
        "psnr": psnr, "psnr_frame_mean": psnr_frame_mean, "psnr_min": psnr_min, "ssim": ssim, "params": params,
        "source_kbps": None if not meta.source_bit_rate else meta.source_bit_rate / 1000,
        "kbps": size * 8 / 1000 / (total / info.fps),
        "frames": total, "width": info.width, "height": info.height, "fps": info.fps,
        "kind": opts.kind, "segments": len(spans), "device": seg_reports[0]["device"],
        "dtype": seg_reports[0]["dtype"], "epochs": [r["epochs"] for r in seg_reports],
        "stopped_by": [r["stopped_by"] for r in seg_reports],
        "encode_seconds": encode_seconds, "warnings": warnings,
        "widen": [float(r.get("widen", 1.0)) for r in seg_reports],
    }


def _encode_segment(input_path: str, opts: EncodeOptions, info, a: int, b: int, total: int, prefix: str,
                    ckpt_dir: str, index: int, count: int, device: torch.device,
                    progress: ProgressCallback | None, deadline: float | None,
                    frames_left: int) -> tuple[list[Section], dict]:
    frames_np, _ = read_frames(input_path, stream=opts.stream, frames=(a, b))
    frames = torch.from_numpy(frames_np)
    n = frames.shape[0]
    fine = opts.kind == "hinerv" and (opts.fine_grid == "on" or (opts.fine_grid == "auto" and wants_fine_grid(frames)))
    config = _plan(opts, info, n, total, fine)
    cap = _cap_bpp(opts, info)
    # What is left of the whole encode's budget (reading included), shared by frame count.
    t_seg = time.monotonic()
    budget = None if deadline is None else max((deadline - t_seg) * n / frames_left, 1e-3)

    def seg_progress(event) -> None:
        if progress is not None:
            event.info.setdefault("segment", index)
            event.info.setdefault("segments", count)
            progress(event)

    emit(progress, "segment", index, count, frames=(a, b))
    kwargs = dict(epochs=opts.epochs, time_budget=budget, psnr_target=opts.psnr, loss=opts.loss, seed=opts.seed,
                  device=str(device), amp=opts.amp, weight_bits=opts.weight_bits, embed_bits=opts.embed_bits,
                  qat=opts.qat, prune=opts.prune, bit_alloc=opts.bit_alloc, batch_size=opts.frames_per_step,
                  sampling=opts.sampling,
                  checkpoint_path=os.path.join(ckpt_dir, f"seg{index}.pt"), resume=opts.resume, progress=seg_progress)
    if opts.lr is not None:
        kwargs["lr"] = opts.lr
    if cap is not None:
        kwargs["coded_bytes"] = functools.partial(coded_bytes, config, entropy=opts.entropy)
        kwargs["max_bytes"] = model_byte_limit(config, cap, total, opts.entropy)
    try:
        result = fit(frames, config, **kwargs)
    except BudgetTooSmallError as exc:
        if deadline is None or opts.time_budget is None or exc.suggested is None:
            raise
        # The segment's share of the budget -> the whole encode's: time spent before the segment
        # plus the suggestion scaled from this segment's frames to the frames left.
        spent = opts.time_budget - (deadline - t_seg)
        raise BudgetTooSmallError(exc.reason, max(spent, 0.0) + exc.suggested * frames_left / n, exc.speed,
                                  option="--time-budget", epochs=exc.epochs) from None
    del frames, frames_np
    report = {
        "index": index, "start": a, "stop": b, "frames": n, "prefix": prefix,
        "psnr": float(result.psnr), "psnr_frame_mean": float(result.psnr_frame_mean), "mse": float(result.mse),
        "psnr_min": float(result.psnr_min), "ssim": float(result.ssim), "psnr_constant": float(result.psnr_constant),
        "params": int(result.params), "epochs": int(result.epochs), "seconds": float(result.seconds),
        "stopped_by": str(result.stopped_by), "device": str(result.device), "dtype": str(result.dtype),
        "widen": float(result.widen),
    }
    return inr_sections(config, result.quantized, prefix, entropy=opts.entropy), report


def _without_checkpoint(exc: DegenerateFitError, ckpt_dir: str) -> DegenerateFitError:
    """`exc` with a note that the checkpoint folder was removed (nothing of the encode is left)."""
    note = f"; removed the checkpoint folder {ckpt_dir}"
    if isinstance(exc, BudgetTooSmallError):
        return BudgetTooSmallError(exc.reason, exc.suggested, exc.speed, option=exc.option, note=note,
                                   epochs=exc.epochs)
    return DegenerateFitError(f"{exc}{note}")


def _plan(opts: EncodeOptions, info: VideoInfo, n: int, total: int, fine_grid: bool = False) -> INRConfig:
    """The INR plan of a segment of `n` frames (`fine_grid`: with `hinerv`'s fine base-grid level); UsageError
    when it is larger than readers accept."""
    src = source_bpp(info)

    rate = "bpp" if opts.bpp is not None else "source_bpp"  # what a capped plan's target sets

    def plan(target: float | None) -> INRConfig:
        return plan_config(info.width, info.height, n, kind=opts.kind, params=_segment_params(opts, n, total),
                           weight_bits=opts.weight_bits, embed_bits=opts.embed_bits, fine_grid=fine_grid,
                           **{rate: target})

    # --bpp and the default size count the file's bytes, not just the model's bits (ratecap)
    cap = _cap_bpp(opts, info)
    if cap is not None:
        config = capped_config(plan, cap, opts.weight_bits, opts.embed_bits, total, entropy=opts.entropy)
    else:
        config = plan(src)
    limit = max_model_params(info.width, info.height, n)
    if config.num_params(n) > limit:
        raise UsageError(f"a model of {config.num_params(n):,} parameters for {n} frames of {info.width}x{info.height} "
                         f"is larger than the video needs (at most {limit:,}): ask for fewer --params")
    if decode_values(config) > max_decode_values(config):
        raise UsageError(f"a model with {max(config.channels)} channels decodes more values per frame than readers "
                         f"accept ({max_decode_values(config):,}): ask for fewer --params")
    return config


def _cap_bpp(opts: EncodeOptions, info: VideoInfo) -> float | None:
    """The bpp the file must stay at or below: --bpp, else the source's own bpp for the default size."""
    return opts.bpp if opts.bpp is not None else (source_bpp(info) if opts.params is None else None)


def source_bpp(info: VideoInfo) -> float | None:
    """The source stream's own bits per pixel (its bit rate over the frame rate and size), if known."""
    if not info.bit_rate or info.bit_rate <= 0 or not info.fps > 0:
        return None
    return info.bit_rate / info.fps / (info.width * info.height)


def _save_done_segment(path: str, sections: list[Section], report: dict) -> None:
    write_nvp(path, sections + [Section("segment-report", SectionKind.PROVENANCE, pack_msgpack(report))])


def _load_done_segment(path: str) -> tuple[list[Section], dict]:
    try:
        with NvpReader(path) as r:
            report = r.read_msgpack("segment-report")
            sections = [Section(s.name, s.kind, r.read(s.name), s.codec) for s in r.sections if s.name != "segment-report"]
    except NvcodecError as exc:
        raise UsageError(f"--resume: the checkpoint {path} is unusable ({exc}); encode again without --resume") from None
    if not isinstance(report, dict) or not all(isinstance(report.get(k), (int, float)) for k in
                                               ("frames", "mse", "psnr", "psnr_frame_mean", "psnr_min", "ssim", "params")):
        raise UsageError(f"--resume: the checkpoint {path} was written by another nvcodec version; "
                         "encode again without --resume")
    return sections, report
