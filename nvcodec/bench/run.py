"""`run_bench()`: nvcodec against the codec pipeline on one clip, everything measured in one process.

Steps: encode the frame range as `.nvp` at each rate point and as H.264 (and HEVC/AV1) at the
bpp nvcodec actually reached; measure PSNR / MS-SSIM; attach every task at every rate point;
task agreement with the backbone run on the original frames (rate-accuracy); at the main rate
point, time the codec, INR-pixel and nvcodec paths per frame (plus several tasks through the
shared INR prefix), count their FLOPs, time decoding and random access.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import av
import numpy as np
import torch

from .. import __version__
from ..codec.encode import DEFAULT_KIND, EncodeOptions, encode
from ..codec.frames import resolve_range
from ..codec.video import NvpVideo, open as open_nvp, resolve_device
from ..errors import UsageError
from ..progress import ProgressCallback, ProgressEvent, emit
from ..adapt.attach import attach
from ..models.registry import get_task
from ..route.infer import task_threshold
from ..route.runtime import RANDOM_TINY, sample_indices
from ..video import probe_video, read_frames
from ..video.codecs import decode_frame_at
from . import paths as P
from .machine import compute_probe, describe_machine
from .rate import QUALITY_NOTE, codec_point, quality
from .timing import time_call

SCHEMA = "nvcodec-bench/1"
DEFAULT_BPPS = (0.02, 0.05, 0.1)
DEFAULT_TIME_BUDGET = 60.0
RANDOM_NOTE = ("random weights: full-size (or tiny, for tests) backbones with seeded random weights and BatchNorm "
               "statistics calibrated on the clip's INR-decoded frames; predictions are meaningless, agreement "
               "figures only show how faithfully each path reproduces the same network's output")
TIMING_NOTE = ("per-frame wall time, batch size 1: each pass runs every sampled frame through the path; the "
               "figure is the median over `repeat` passes after `warmup` untimed passes (total = median of the "
               "per-pass totals, so stages need not add up exactly); CUDA is synchronised around every stage. "
               "The codec path decodes the whole file sequentially each pass (container opening excluded) and its "
               "decode time is divided by the clip's frame count")
FLOPS_NOTE = ("GFLOPs per frame counted by torch.utils.flop_counter.FlopCounterMode (via nvcodec.route.flops."
              "count_flops) over exactly the modules each stage runs: convolutions and matrix products, "
              "2 FLOPs per multiply-accumulate; elementwise work (resize, normalize, activations, softmax) is not "
              "counted. Stages with nothing counted are null, not 0")


@dataclass
class BenchOptions:
    """Every knob of `run_bench`; the defaults are `nvcodec bench`'s."""

    tasks: list[str]
    frames: tuple[int | None, int | None] | None = None
    codecs: list[str] = field(default_factory=lambda: ["x264", "x265"])
    bpps: list[float] = field(default_factory=lambda: list(DEFAULT_BPPS))
    params: float | None = None
    bpp: float | None = None
    epochs: int | None = None
    time_budget: float | None = None
    kind: str = DEFAULT_KIND
    repeat: int = 5
    warmup: int = 1
    device: str = "auto"
    weights: str | None = None
    threads: int | None = None
    sample: int | None = None
    attach_epochs: int = 30
    attach_frames: int | None = None
    random_access: int = 5
    threshold: float | None = None
    seed: int = 0
    keep: str | None = None
    decode_speed_all: bool = False

    def validate(self) -> None:
        """Raise UsageError for values that cannot work."""
        for t in self.tasks:
            get_task(t)
        if len(set(self.tasks)) != len(self.tasks):
            raise UsageError("--task lists a task twice")
        if len({get_task(t).clip is None for t in self.tasks}) > 1:
            raise UsageError("--task mixes per-frame and clip tasks; bench them in separate runs")
        if self.repeat < 1:
            raise UsageError("--repeat must be at least 1")
        if self.warmup < 0:
            raise UsageError("--warmup must be 0 or more")
        if self.threads is not None and self.threads < 1:
            raise UsageError("--threads must be at least 1")
        if self.sample is not None and self.sample < 1:
            raise UsageError("--sample must be at least 1")
        if self.random_access < 1:
            raise UsageError("--random-access must be at least 1")
        if self.params is not None and self.bpp is not None:
            raise UsageError("give --params or --bpp, not both")
        if not self.bpps and self.params is None and self.bpp is None:
            raise UsageError("nothing to encode: give --bpps, --bpp or --params")
        if self.epochs is None and self.time_budget is None:
            self.time_budget = DEFAULT_TIME_BUDGET
        EncodeOptions(kind=self.kind, params=self.params, bpp=self.bpp, psnr=None, epochs=self.epochs,
                      time_budget=self.time_budget, device=self.device).validate()
        if "x264" not in self.codecs:
            self.codecs = ["x264", *self.codecs]
        if self.threshold is not None and not 0 < self.threshold < 1:
            raise UsageError("--threshold must be in (0, 1)")
        if self.attach_epochs < 1:
            raise UsageError("--attach-epochs must be at least 1")


@dataclass
class _Point:
    tag: str
    target: dict[str, float]
    main: bool
    path: str = ""
    encode: dict = field(default_factory=dict)
    codecs: dict[str, dict] = field(default_factory=dict)
    x264_file: str = ""
    x264_frames: np.ndarray | None = None
    inr_frames: torch.Tensor | None = None
    attach: dict[str, dict] = field(default_factory=dict)


class _Steps:
    """Forwards progress: bench-level steps plus the encoder's and attach's own events."""

    def __init__(self, progress: ProgressCallback | None, total: int) -> None:
        self.progress = progress
        self.total = total
        self.step = 0

    def next(self, what: str) -> None:
        emit(self.progress, f"bench: {what}", self.step, self.total, what=what)
        self.step += 1

    def forward(self, event: ProgressEvent) -> None:
        if self.progress is not None:
            self.progress(event)


def _plan_points(o: BenchOptions) -> list[_Point]:
    points: list[_Point] = []
    if o.params is not None or o.bpp is not None:
        main = {"params": float(o.params)} if o.params is not None else {"bpp": float(o.bpp)}  # type: ignore[arg-type]
        points.append(_Point("main", main, True))
        others = [b for b in o.bpps if o.bpp is None or abs(b - o.bpp) > 1e-12]
    else:
        top = max(o.bpps)
        points.append(_Point(f"bpp{top:g}", {"bpp": top}, True))
        others = [b for b in o.bpps if b != top]
    points += [_Point(f"bpp{b:g}", {"bpp": b}, False) for b in sorted(others)]
    return points


def _encode_point(input_path: str, pt: _Point, o: BenchOptions, frames: tuple[int, int], steps: _Steps) -> dict:
    trace: list[dict[str, float]] = []
    t0 = time.perf_counter()
    last: list[float | None] = [None]

    def cb(event: ProgressEvent) -> None:
        psnr = event.info.get("psnr")
        if event.stage == "fit" and psnr is not None and psnr != last[0]:
            last[0] = psnr
            trace.append({"seconds": time.perf_counter() - t0, "epoch": int(event.step), "psnr": float(psnr)})
        steps.forward(event)

    eo = EncodeOptions(kind=o.kind, params=pt.target.get("params"), bpp=pt.target.get("bpp"), psnr=None,
                       epochs=o.epochs, time_budget=o.time_budget, seed=o.seed, device=o.device, frames=frames)
    summary = encode(input_path, pt.path, eo, overwrite=True, progress=cb)
    keys = ("bytes", "bpp", "psnr", "psnr_min", "ssim", "params", "frames", "width", "height", "kind", "epochs",
            "stopped_by", "encode_seconds", "device", "dtype")
    out = {k: summary.get(k) for k in keys}
    out["psnr_reported_by_encoder"] = out.pop("psnr")
    out["trace"] = trace
    return out


def _keyframes(path: str) -> int:
    with av.open(path) as c:
        return int(sum(1 for p in c.demux(c.streams.video[0]) if p.size and p.is_keyframe))


def _adapter_bytes(video: NvpVideo, entry: dict) -> int:
    return int(sum(video.reader.info(s).stored_length for s in entry.get("adapter_sections", [])))


def _pct(new: float | None, old: float | None) -> float | None:
    if new is None or old is None or old <= 0:
        return None
    return 100.0 * (1.0 - new / old)


def _attach_summary(r: dict) -> dict:
    keys = ("chosen", "fidelity", "adapter_params", "adapter_params_pct", "backbone_params", "gflops",
            "trained_pairs", "trained_adapters", "total_pairs", "adapter_epochs", "sample_frames", "teacher",
            "weights", "weights_random", "seconds")
    return {k: r.get(k) for k in keys}


def _rate_accuracy(pt: _Point, o: BenchOptions, orig: np.ndarray, idx: list[int], dev: torch.device) -> dict:
    """Agreement with the original-pixel result, untimed, for one non-main rate point."""
    out: dict[str, Any] = {}
    with open_nvp(pt.path) as video:
        for name in o.tasks:
            t = P.load_task(video, name, o.weights, dev, o.threshold)
            units = P.task_units(t, orig.shape[0], idx)
            ref = P.pixel_outputs(t, orig, units, dev)
            row = {"nvcodec": P.agreement(t, *P.nvcodec_outputs(t, video, units, dev), *ref),
                   "inr_pixels": P.agreement(t, *P.pixel_outputs(t, pt.inr_frames, units, dev), *ref)}
            if pt.x264_frames is not None:
                row["x264"] = P.agreement(t, *P.pixel_outputs(t, pt.x264_frames, units, dev), *ref)
            out[name] = row
    return out


def _path_entry(name: str, run: P.PathRun | None, gflops: dict, agree: dict | None, notes: dict) -> dict:
    return {"label": P.PATH_LABELS.get(name, name), "latency_ms": run.timing.to_dict() if run else None,
            "gflops": gflops, "gflops_notes": notes, "agreement": agree}


def _gflops_notes(g: dict) -> dict[str, str]:
    notes = {}
    for k, v in g.items():
        if v is None:
            notes[k] = P.CODEC_DECODE_NOTE if k == "decode" else P.UNCOUNTED_NOTE
    return notes


def _task_timing(video: NvpVideo, pt: _Point, o: BenchOptions, orig: np.ndarray, idx: list[int],
                 dev: torch.device, threads: int, steps: _Steps) -> tuple[dict, list[P.TaskSetup], list[list[list[int]]]]:
    out: dict[str, Any] = {}
    setups = []
    all_units = []
    F = orig.shape[0]
    for name in o.tasks:
        t = P.load_task(video, name, o.weights, dev, o.threshold)
        setups.append(t)
        units = P.task_units(t, F, idx)
        all_units.append(units)
        ref_raw, ref_preds = P.pixel_outputs(t, orig, units, dev)
        kw = dict(repeat=o.repeat, warmup=o.warmup, device=dev)
        steps.next(f"{name}: time codec path")
        codec = P.codec_path(t, pt.x264_file, F, units, threads=threads, **kw)
        steps.next(f"{name}: time INR pixel path")
        inr = P.inr_pixels_path(t, video, units, **kw)
        steps.next(f"{name}: time nvcodec path")
        nv = P.nvcodec_path(t, video, units, **kw)
        g_codec = P.codec_flops(t, orig[units[0]], dev)
        g_inr = P.inr_pixels_flops(t, video, units[0], dev)
        g_nv = P.nvcodec_flops(t, video, units[0], dev)
        runs = {"codec": (codec, g_codec), "inr_pixels": (inr, g_inr), "nvcodec": (nv, g_nv)}
        paths = {}
        for key, (run, g) in runs.items():
            agree = P.agreement(t, run.raw[name], run.preds[name], ref_raw, ref_preds)
            paths[key] = _path_entry(key, run, g, agree, _gflops_notes(g))
        paths["nvcodec"]["agreement_with_inr_pixels"] = P.agreement(
            t, nv.raw[name], nv.preds[name], inr.raw[name], inr.preds[name])
        lat = {k: paths[k]["latency_ms"]["total_ms"] for k in paths}
        red = {
            "latency_vs_codec_pct": _pct(lat["nvcodec"], lat["codec"]),
            "latency_vs_inr_pixels_pct": _pct(lat["nvcodec"], lat["inr_pixels"]),
            "gflops_vs_codec_pct": _pct(g_nv["total"], g_codec["total"]),
            "gflops_vs_inr_pixels_pct": _pct(g_nv["total"], g_inr["total"]),
            "note": ("positive = nvcodec path cheaper, negative = more expensive; gflops_vs_codec compares the "
                     "nvcodec path (INR decode included) with the codec path's backbone only, because H.264 "
                     "decoding has no FLOP count"),
        }
        entry = t.entry
        out[name] = {
            "output_type": t.rt.spec.output_type, "weights": t.rt.weights_label, "weights_random": t.rt.random,
            "inr_layer": t.inr_layer, "injection_point": t.point,
            "adapter_params": entry.get("adapter_params"), "adapter_params_pct": entry.get("adapter_params_pct"),
            "adapter_bytes": _adapter_bytes(video, entry), "backbone_params": entry.get("backbone_params"),
            "geometry": t.rt.geometry.to_dict(), "paths": paths, "reductions": red,
            "reference": "the same backbone on the original frames of the input (decoded by PyAV)",
            "unit": "window" if t.rt.spec.clip is not None else "frame",
        }
        if t.rt.spec.clip is not None:
            out[name]["window_frames"] = units
            out[name]["frames_per_window"] = t.rt.clip_len
        if t.rt.random:
            out[name]["note"] = RANDOM_NOTE
    return out, setups, all_units


def _multi_task(setups: list[P.TaskSetup], video: NvpVideo, tasks_out: dict, o: BenchOptions,
                units: list[list[list[int]]], dev: torch.device, steps: _Steps) -> dict:
    kw = dict(repeat=o.repeat, warmup=o.warmup, device=dev)
    steps.next("several tasks: shared INR prefix")
    shared = P.nvcodec_shared_path(setups, video, units, **kw)
    steps.next("several tasks: separately")
    separate = P.nvcodec_separate_path(setups, video, units, **kw)
    g_shared = P.shared_flops(setups, video, [u[0] for u in units], dev)
    g_sep = float(sum(tasks_out[t.name]["paths"]["nvcodec"]["gflops"]["total"] for t in setups))

    def derived(path: str) -> dict:
        per = [tasks_out[t.name]["paths"][path] for t in setups]
        decode = per[0]["latency_ms"]["stages_ms"].get("decode", 0.0)
        rest = sum(sum(v for k, v in p["latency_ms"]["stages_ms"].items() if k != "decode") for p in per)
        g_dec = per[0]["gflops"].get("decode")
        g_rest = sum((p["gflops"]["total"] - (p["gflops"].get("decode") or 0.0)) for p in per)
        return {"label": P.PATH_LABELS[path] + " (decode once, every backbone)",
                "total_ms": decode + rest, "gflops": (g_dec or 0.0) + g_rest,
                "method": "derived from the single-task stage medians above: decode counted once"}

    codec = derived("codec")
    inr = derived("inr_pixels")
    st, sp = shared.timing.total_ms, separate.timing.total_ms
    return {
        "tasks": [t.name for t in setups], "inr_layers": {t.name: t.inr_layer for t in setups},
        "shared": {"label": "nvcodec, shared INR prefix (blocks 0..max k decoded once per frame)",
                   "latency_ms": shared.timing.to_dict(), "gflops": g_shared},
        "separate": {"label": "nvcodec, each task with its own partial decode",
                     "latency_ms": separate.timing.to_dict(), "gflops": {"total": g_sep}},
        "codec": codec, "inr_pixels": inr,
        "reductions": {"shared_vs_separate_latency_pct": _pct(st, sp),
                       "shared_vs_separate_gflops_pct": _pct(g_shared["total"], g_sep),
                       "shared_vs_codec_latency_pct": _pct(st, codec["total_ms"]),
                       "shared_vs_inr_pixels_latency_pct": _pct(st, inr["total_ms"]),
                       "shared_vs_inr_pixels_gflops_pct": _pct(g_shared["total"], inr["gflops"])},
    }


def decode_speed(video: NvpVideo, device: torch.device, repeat: int, warmup: int) -> dict:
    """Frames/s of full decoding (`frames()`) and of partial decoding to every block (`features(k)`)."""
    n = len(video)
    full = time_call(lambda: video.frames(None, device=device), repeat=repeat, warmup=warmup, device=device)
    blocks = []
    for k in range(video.num_layers):
        r = time_call(lambda k=k: video.features(k, None, device=device), repeat=repeat, warmup=warmup, device=device)
        cfg = video.config(0)
        blocks.append({"block": k, "fps": n / (r["median_ms"] / 1000.0), "ms_per_frame": r["median_ms"] / n,
                       "channels": cfg.block_out_channels(k)})
    return {"frames": n, "batch_size": 8, "repeat": repeat, "warmup": warmup,
            "full": {"fps": n / (full["median_ms"] / 1000.0), "ms_per_frame": full["median_ms"] / n},
            "blocks": blocks}


def codec_decode_speed(path: str, width: int, height: int, frames: int, threads: int, repeat: int, warmup: int) -> dict:
    """Frames/s of sequential PyAV decoding (with RGB conversion) of a codec file."""
    r = time_call(lambda: P.decode_codec_file(path, width, height, threads), repeat=repeat, warmup=warmup, device=None)
    return {"fps": frames / (r["median_ms"] / 1000.0), "ms_per_frame": r["median_ms"] / frames, "threads": threads}


def _random_access(main: _Point, F: int, o: BenchOptions, dev: torch.device) -> dict:
    positions = sample_indices(F, min(o.random_access, F))
    rows = []
    with open_nvp(main.path) as v:
        v.frames([0], device=dev)
        for n in positions:
            warm = time_call(lambda n=n: v.frames([n], device=dev), repeat=o.repeat, warmup=1, device=dev)

            def cold(n: int = n) -> None:
                with open_nvp(main.path) as fresh:
                    fresh.frames([n], device=dev)

            cold_t = time_call(cold, repeat=o.repeat, warmup=1, device=dev)
            seek = time_call(lambda n=n: decode_frame_at(main.x264_file, n), repeat=o.repeat, warmup=1, device=None)
            rows.append({"frame": n, "nvcodec_ms": warm["median_ms"], "nvcodec_cold_ms": cold_t["median_ms"],
                         "x264_ms": seek["median_ms"]})
    return {
        "positions": positions, "rows": rows, "x264_keyframes": _keyframes(main.x264_file), "frames": F,
        "method": ("median of `repeat` calls after one warm-up. nvcodec_ms: v.frames([N]) on an open file with the "
                   "decoder cached (v[N]); nvcodec_cold_ms: open the .nvp, load the decoder, decode frame N, close; "
                   "x264_ms: nvcodec.video.decode_frame_at (open, seek to the keyframe at or before N, decode "
                   "forward to N). x264 uses its default GOP (keyint 250), so a short clip has one keyframe"),
    }


def _losses(report: dict) -> list[str]:
    """Every measured case where nvcodec does worse, in plain words (computed, never hard-coded)."""
    out: list[str] = []
    for pt in report["rate_points"]:
        nv = pt["nvcodec"]
        at = f"{nv['bpp']:.4f} bpp"
        slower = []
        for c in pt["codecs"].values():
            if not c.get("available"):
                continue
            if c["psnr"] > nv["psnr"] or c["ms_ssim"] > nv["ms_ssim"]:
                out.append(f"rate-distortion at {at}: nvcodec {nv['psnr']:.2f} dB / MS-SSIM {nv['ms_ssim']:.4f}, "
                           f"{c['label']} {c['psnr']:.2f} dB / {c['ms_ssim']:.4f} at {c['bpp']:.4f} bpp")
            if nv["encode_seconds"] > c["encode_seconds"]:
                slower.append(f"{c['label']} {c['encode_seconds']:.2f} s")
        if slower:
            out.append(f"encode time at {at} ({nv['frames']} frames): nvcodec {nv['encode_seconds']:.1f} s, "
                       + ", ".join(slower))
        for task, a in pt.get("attach", {}).items():
            out.append(f"attach time ({task}) at {at}: {a['seconds']:.1f} s, once per file and task "
                       f"(the codec pipeline needs none)")
        for task, ra in pt.get("rate_accuracy", {}).items():
            key = "top1_agreement" if "top1_agreement" in ra["nvcodec"] else "fidelity"
            x = ra.get("x264", {}).get(key)
            n = ra["nvcodec"].get(key)
            if x is not None and n is not None and x > n:
                out.append(f"rate-accuracy ({task}) at {at}: nvcodec path {key} {n:.3f}, x264 pixels {x:.3f}")
    for task, t in report["tasks"].items():
        red, p = t["reductions"], t["paths"]
        if red["latency_vs_codec_pct"] is not None and red["latency_vs_codec_pct"] < 0:
            out.append(f"latency ({task}): nvcodec path {p['nvcodec']['latency_ms']['total_ms']:.1f} ms/frame, "
                       f"H.264 path {p['codec']['latency_ms']['total_ms']:.1f} ms/frame")
        if red["latency_vs_inr_pixels_pct"] is not None and red["latency_vs_inr_pixels_pct"] < 0:
            out.append(f"latency ({task}): nvcodec path {p['nvcodec']['latency_ms']['total_ms']:.1f} ms/frame, "
                       f"INR full decode + backbone {p['inr_pixels']['latency_ms']['total_ms']:.1f} ms/frame")
        if red["gflops_vs_codec_pct"] is not None and red["gflops_vs_codec_pct"] < 0:
            out.append(f"FLOPs ({task}): nvcodec path {p['nvcodec']['gflops']['total']:.3f} GFLOPs/frame, H.264 path "
                       f"backbone {p['codec']['gflops']['total']:.3f} (its decode is not counted)")
    mt = report.get("multi_task")
    if mt and (mt["reductions"]["shared_vs_separate_latency_pct"] or 0) < 0:
        out.append(f"several tasks: shared prefix {mt['shared']['latency_ms']['total_ms']:.1f} ms/frame, separately "
                   f"{mt['separate']['latency_ms']['total_ms']:.1f} ms/frame")
    ra = report.get("random_access")
    for r in (ra or {}).get("rows", []):
        if r["nvcodec_cold_ms"] > r["x264_ms"] or r["nvcodec_ms"] > r["x264_ms"]:
            out.append(f"random access to frame {r['frame']}: nvcodec {r['nvcodec_ms']:.1f} ms (file open) / "
                       f"{r['nvcodec_cold_ms']:.1f} ms (open + load + decode), x264 seek {r['x264_ms']:.1f} ms")
    return out


def run_bench(input_path: str, options: BenchOptions, *, progress: ProgressCallback | None = None) -> dict:
    """Benchmark nvcodec against the codec pipeline on `input_path`; returns the full report dict."""
    o = options
    o.validate()
    dev = resolve_device(o.device)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    wall0 = time.perf_counter()
    for name in o.tasks:
        get_task(name).resolve_weights("random" if o.weights == RANDOM_TINY else o.weights)
    old_threads = torch.get_num_threads()
    if o.threads:
        torch.set_num_threads(o.threads)
    threads = torch.get_num_threads()
    workdir = o.keep or tempfile.mkdtemp(prefix="nvcodec-bench-")
    if o.keep:
        os.makedirs(o.keep, exist_ok=True)
    try:
        return _run(input_path, o, dev, threads, workdir, started, wall0, progress)
    finally:
        torch.set_num_threads(old_threads)
        if not o.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(input_path: str, o: BenchOptions, dev: torch.device, threads: int, workdir: str, started: str,
         wall0: float, progress: ProgressCallback | None) -> dict:
    machine = describe_machine(dev)
    probe_start = compute_probe(dev)
    info = probe_video(input_path)
    start, stop = resolve_range(o.frames, info.frames)
    orig, _ = read_frames(input_path, frames=(start, stop))
    F, H, W = orig.shape[:3]
    idx = sample_indices(F, o.sample or F)
    points = _plan_points(o)
    multi = len(o.tasks) > 1
    steps = _Steps(progress, len(points) * (2 + len(o.tasks)) + 3 * len(o.tasks) + (2 if multi else 0) + 3)
    stem = os.path.splitext(os.path.basename(input_path))[0]
    speed_repeat = min(o.repeat, 3)

    rate_points = []
    for pt in points:
        pt.path = os.path.join(workdir, f"{stem}_{pt.tag}.nvp")
        steps.next(f"encode .nvp ({pt.tag})")
        pt.encode = _encode_point(input_path, pt, o, (start, stop), steps)
        with open_nvp(pt.path) as video:
            pt.inr_frames = video.frames(None, device=dev).cpu()
            nv = {"target": pt.target, **pt.encode, **quality(pt.inr_frames, orig), "file": pt.path}
            if o.decode_speed_all or pt.main:
                steps.next(f"decode speed ({pt.tag})")
                nv["decode_speed"] = decode_speed(video, dev, repeat=speed_repeat, warmup=1)
        steps.next(f"codecs at {nv['bpp']:.4f} bpp")
        for short in o.codecs:
            rec, decoded = codec_point(orig, workdir, info.fps, short, nv["bpp"], f"{stem}_{pt.tag}", threads)
            if decoded is not None and (o.decode_speed_all or pt.main):
                rec["decode_speed"] = codec_decode_speed(rec["file"], W, H, F, threads, speed_repeat, 1)
            pt.codecs[short] = rec
            if short == "x264":
                pt.x264_file, pt.x264_frames = rec["file"], decoded
        for name in o.tasks:
            steps.next(f"attach {name} ({pt.tag})")
            pt.attach[name] = _attach_summary(attach(pt.path, name, weights=o.weights, epochs=o.attach_epochs,
                                                     sample_frames=o.attach_frames, device=str(dev), seed=o.seed,
                                                     source=input_path, progress=steps.forward))
        row = {"tag": pt.tag, "main": pt.main, "nvcodec": nv, "codecs": pt.codecs, "attach": pt.attach}
        if o.tasks and not pt.main:
            row["rate_accuracy"] = _rate_accuracy(pt, o, orig, idx, dev)
        rate_points.append(row)

    main = points[0]
    tasks_out: dict[str, Any] = {}
    multi_out = None
    if o.tasks:
        with open_nvp(main.path) as video:
            tasks_out, setups, units = _task_timing(video, main, o, orig, idx, dev, threads, steps)
            multi_out = _multi_task(setups, video, tasks_out, o, units, dev, steps) if multi else None
        rate_points[0]["rate_accuracy"] = {
            name: {k: tasks_out[name]["paths"][p]["agreement"] for k, p in
                   (("nvcodec", "nvcodec"), ("inr_pixels", "inr_pixels"), ("x264", "codec"))}
            for name in o.tasks}
    steps.next("random access")
    random_access = _random_access(main, F, o, dev)

    weights = {n: tasks_out[n]["weights"] for n in o.tasks}
    any_random = any(tasks_out[n]["weights_random"] for n in o.tasks)
    report: dict[str, Any] = {
        "schema": SCHEMA, "nvcodec_version": __version__, "input": os.path.abspath(input_path),
        "clip": os.path.basename(input_path), "machine": machine,
        "conditions": {
            "weights": weights, "weights_random": any_random,
            "weights_note": RANDOM_NOTE if any_random else ("pretrained weights" if o.tasks else "no tasks"),
            "device": str(dev), "threads": threads, "frames": [start, stop], "frame_count": F,
            "width": W, "height": H, "fps": info.fps, "source_codec": info.codec,
            "sample_frames": idx, "repeat": o.repeat, "warmup": o.warmup, "batch_size": 1,
            "encode": {"kind": o.kind, "params": o.params, "bpp": o.bpp, "bpps": o.bpps, "epochs": o.epochs,
                       "time_budget_s": o.time_budget, "psnr_stop": None, "seed": o.seed},
            "attach": {"epochs": o.attach_epochs, "sample_frames": o.attach_frames or "attach default"},
            "codecs": o.codecs, "codec_preset": "encoder default (x264/x265 medium)",
            "codec_rate_control": "CRF bisection (bitrate fallback) to the bpp nvcodec reached, container bytes counted",
            "detection_threshold": o.threshold if o.threshold is not None else
                {n: task_threshold(get_task(n), None) for n in o.tasks},
            "timing": TIMING_NOTE, "flops": FLOPS_NOTE, "quality": QUALITY_NOTE,
            "decode_speed": (f"median of {speed_repeat} runs after 1 warm-up over all {F} frames: nvcodec "
                             "frames()/features(k) in batches of 8, codecs sequential PyAV decode + RGB conversion"),
            "bpp": "file bytes * 8 / (width * height * frames); .nvp before attaching tasks, codecs with container",
            "started": started, "load_average_start": machine["load_average"],
        },
        "rate_points": rate_points,
        "tasks": tasks_out,
        "multi_task": multi_out,
        "random_access": random_access,
        "kept_files": workdir if o.keep else None,
        "options": options_dict(o),
    }
    report["losses"] = _losses(report)
    report["conditions"]["wall_seconds"] = time.perf_counter() - wall0
    report["conditions"]["load_average_end"] = describe_machine(None)["load_average"]
    report["conditions"]["compute_probe"] = {
        "start": probe_start, "end": compute_probe(dev),
        "note": "fp32 matmul speed at the start and end of the run; a large gap means other work competed for the machine"}
    steps.next("done")
    return json_safe(report)


def json_safe(obj: Any) -> Any:
    """Replace NaN and infinities by None and numpy scalars by Python numbers, recursively."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def options_dict(o: BenchOptions) -> dict:
    """The options as a plain dict (for records)."""
    return asdict(o)
