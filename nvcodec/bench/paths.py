"""The pipelines `bench` compares, run one frame at a time with every stage timed.

* ``codec``: PyAV decode of an H.264 (or other codec) file, resize + normalize, full backbone, head.
* ``inr_pixels``: full INR decode to uint8 pixels, resize + normalize, full backbone, head.
* ``nvcodec``: partial INR decode to block k, micro adapter, backbone tail from the injection point, head.
* ``nvcodec_shared`` / ``nvcodec_separate``: several tasks through one shared INR prefix, or each alone.

Every path also has a FLOP count per stage (`*_flops`), taken on one unit with
`nvcodec.route.flops.count_flops` over exactly the modules that stage runs.

A *unit* is the list of frames one task output needs: ``[j]`` for per-frame tasks, a window's
sampled frames for clip tasks (`task_units`); timings and FLOPs are per unit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import av
import numpy as np
import torch
from av.video.reformatter import Interpolation

from ..codec.video import NvpVideo, Segment
from ..errors import InputError, NotAttachedError, UsageError
from ..route.adapter import MicroAdapter
from ..route.clips import plan_windows, union_frames
from ..models.agreement import caption_agreement, classification_agreement, detection_map
from ..route.flops import count_flops
from ..codec.meta import read_routing
from ..route.infer import task_threshold
from ..route.runtime import TaskRuntime, build_runtime, inr_to_geometry, load_adapters
from .timing import StageClock, Timing, measure_passes

RGB_INTERP = Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
"""The YUV -> RGB conversion `nvcodec.video.read_frames` uses; the codec path uses the same."""

CODEC_DECODE_NOTE = ("null, not 0: the codec decode runs inside FFmpeg (C/assembly, integer transforms), "
                     "outside PyTorch, so FlopCounterMode cannot count it")
UNCOUNTED_NOTE = ("null: only convolutions and matrix products are counted (FlopCounterMode); this stage "
                  "runs none (resize, normalize, crop, softmax/top-k, box conversion are elementwise)")

PATH_LABELS = {
    "codec": "H.264 decode (PyAV) + resize/normalize + full backbone",
    "inr_pixels": "INR full decode to pixels + resize/normalize + full backbone",
    "nvcodec": "nvcodec: partial INR decode + micro adapter + backbone tail",
}


@dataclass
class TaskSetup:
    """One attached task ready to run: backbone runtime, routing entry and per-segment adapters."""

    name: str
    rt: TaskRuntime
    entry: dict
    adapters: dict[int, MicroAdapter]
    threshold: float | None

    @property
    def inr_layer(self) -> int:
        return int(self.entry["inr_layer"])

    @property
    def point(self) -> str:
        return str(self.entry["injection_point"])


@dataclass
class PathRun:
    """A measured path: per-frame timing and the raw outputs / predictions of its first pass."""

    timing: Timing
    raw: dict[str, list[Any]] = field(default_factory=dict)
    preds: dict[str, list[list[dict]]] = field(default_factory=dict)


def load_task(video: NvpVideo, name: str, weights: str | None, device: torch.device,
              threshold: float | None) -> TaskSetup:
    """Runtime + adapters of an attached task, built the way `infer` builds them.

    `threshold` None: the task's own default score threshold (None for heads without one).
    A random backbone is BN-calibrated on the same INR-decoded frames `attach` used, so the
    backbone is identical to the one the adapter was trained against.
    """
    routing = read_routing(video.reader)
    entry = routing["tasks"].get(name)
    if entry is None:
        raise NotAttachedError(f"{video.path} has no routing for task {name!r}")
    m = video.metadata
    w = weights or entry.get("weights")
    calib = None
    if entry.get("weights_random") or w in ("random", "random-tiny"):
        calib = video.frames((entry.get("sample_frames") or [0])[:64], device=device)
    rt = build_runtime(name, w, device, m.width, m.height, calibration_frames=calib)
    adapters = load_adapters(video, entry, rt, device)
    return TaskSetup(name, rt, entry, adapters, task_threshold(rt.spec, threshold))


def detach(raw: Any) -> Any:
    """Raw backbone output moved to CPU float (tensors inside dicts/lists too)."""
    if isinstance(raw, torch.Tensor):
        return raw.detach().float().cpu()
    if isinstance(raw, dict):
        return {k: detach(v) for k, v in raw.items()}
    if isinstance(raw, (list, tuple)):
        return type(raw)(detach(v) for v in raw)
    return raw


def _head(t: TaskSetup, raw: Any) -> list[list[dict]]:
    m = t.rt.geometry.frame_hw
    opts = {} if t.threshold is None else {"threshold": t.threshold}
    return t.rt.spec.postprocess(raw, t.rt.geometry, m, model=t.rt.model, **opts)


def _keep(run: PathRun, key: str, raw: Any, preds: list[list[dict]]) -> None:
    run.raw.setdefault(key, []).append(detach(raw))
    run.preds.setdefault(key, []).extend(preds)


def task_units(t: TaskSetup, frame_count: int, idx: list[int]) -> list[list[int]]:
    """Per-frame tasks: each sampled frame of `idx`; clip tasks: windows of the task's span (at most
    the clip) laid end to end over the `frame_count` frames."""
    if t.rt.spec.clip is None:
        return [[j] for j in idx]
    return plan_windows(0, frame_count, t.rt.clip_len, t.rt.spec.clip.span(t.rt.tiny))


def _segment(video: NvpVideo, unit: list[int]) -> Segment:
    runs = list(video.batches(unit, len(unit)))
    if len(runs) != 1:
        raise UsageError(f"frames {unit[0]}..{unit[-1]} span several .nvp segments; bench runs a window in one")
    return runs[0][0]


def _frames(frames: np.ndarray | torch.Tensor, unit: list[int], device: torch.device) -> torch.Tensor:
    fr = frames[unit]
    return (torch.from_numpy(np.ascontiguousarray(fr)) if isinstance(fr, np.ndarray) else fr).to(device)


# --- codec decoding -----------------------------------------------------------

def _decoded(container: av.container.InputContainer, stream: Any) -> Iterator[av.VideoFrame]:
    for packet in container.demux(stream):
        yield from packet.decode()


def _next_rgb(frames: Iterator[av.VideoFrame], width: int, height: int) -> np.ndarray:
    frame = next(frames, None)
    if frame is None:
        raise InputError("the codec file holds fewer frames than the clip")
    rgb = frame.reformat(format="rgb24", interpolation=RGB_INTERP).to_ndarray()
    return np.ascontiguousarray(rgb[:height, :width])


def open_codec_stream(path: str, threads: int) -> tuple[av.container.InputContainer, Any]:
    """Open a codec file for sequential decoding with `threads` decoder threads (FFmpeg frame+slice threading)."""
    try:
        container = av.open(path)
    except av.error.FFmpegError as exc:
        raise InputError(f"{path}: cannot open ({exc})") from None
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = max(1, int(threads))
    return container, stream


def decode_codec_file(path: str, width: int, height: int, threads: int) -> np.ndarray:
    """Every frame of a codec file as uint8 RGB (N, H, W, 3), converted like the codec path converts."""
    container, stream = open_codec_stream(path, threads)
    with container:
        out = [np.ascontiguousarray(f.reformat(format="rgb24", interpolation=RGB_INTERP).to_ndarray()[:height, :width])
               for f in _decoded(container, stream)]
    if not out:
        raise InputError(f"{path}: no frames decoded")
    return np.stack(out)


# --- single-task paths ----------------------------------------------------------

@torch.inference_mode()
def codec_path(t: TaskSetup, codec_file: str, total_frames: int, units: list[list[int]], *, repeat: int,
               warmup: int, device: torch.device, threads: int) -> PathRun:
    """Sequential PyAV decode of the whole file (amortised per frame, or per window for clip tasks),
    then resize/normalize + backbone per unit."""
    h, w = t.rt.geometry.frame_hw
    want = set(union_frames(units))
    run = PathRun(timing=None)  # type: ignore[arg-type]

    def one_pass(clock: StageClock, i: int) -> None:
        kept: dict[int, np.ndarray] = {}
        container, stream = open_codec_stream(codec_file, threads)
        with container:
            frames = _decoded(container, stream)
            for n in range(total_frames):
                rgb = clock.run("decode", _next_rgb, frames, w, h)
                if n in want:
                    kept[n] = rgb
        for u in units:
            x = clock.run("preprocess", lambda: t.rt.pixel_input(torch.from_numpy(np.stack([kept[j] for j in u]))
                                                                 .to(device)))
            raw = clock.run("backbone", t.rt.model, x)
            preds = clock.run("head", _head, t, raw)
            if i == 0:
                _keep(run, t.name, raw, preds)

    per = len(units) if t.rt.spec.clip is not None else total_frames
    run.timing = measure_passes(one_pass, frames=len(units), repeat=repeat, warmup=warmup, device=device,
                                divisors={"decode": per})
    return run


@torch.inference_mode()
def inr_pixels_path(t: TaskSetup, video: NvpVideo, units: list[list[int]], *, repeat: int, warmup: int,
                    device: torch.device) -> PathRun:
    """`video.frames(unit)` (full INR decode to uint8), resize/normalize, full backbone, head."""
    run = PathRun(timing=None)  # type: ignore[arg-type]

    def one_pass(clock: StageClock, i: int) -> None:
        for u in units:
            frames = clock.run("decode", video.frames, u, device=device)
            x = clock.run("preprocess", t.rt.pixel_input, frames)
            raw = clock.run("backbone", t.rt.model, x)
            preds = clock.run("head", _head, t, raw)
            if i == 0:
                _keep(run, t.name, raw, preds)

    run.timing = measure_passes(one_pass, frames=len(units), repeat=repeat, warmup=warmup, device=device)
    return run


def _partial_decode(video: NvpVideo, seg: Segment, unit: list[int], k: int, device: torch.device) -> torch.Tensor:
    dec, _ = video.decoder(seg, k, device)
    return dec.features(video.inputs(seg, unit, device, k), k)


def _adapt(t: TaskSetup, video: NvpVideo, seg: Segment, feat: torch.Tensor) -> torch.Tensor:
    cfg = video.config(seg.index)
    m = video.metadata
    return t.adapters[seg.index](inr_to_geometry(feat.float(), t.rt.geometry, m.width, m.height,
                                                 cfg.pad_width, cfg.pad_height))


def _nvcodec_unit(clock: StageClock, t: TaskSetup, video: NvpVideo, seg: Segment, unit: list[int],
                  device: torch.device) -> tuple[Any, list[list[dict]]]:
    feat = clock.run("decode", _partial_decode, video, seg, unit, t.inr_layer, device)
    act = clock.run("adapter", _adapt, t, video, seg, feat)
    raw = clock.run("backbone", t.rt.model.forward_from, act, t.point)
    return raw, clock.run("head", _head, t, raw)


@torch.inference_mode()
def nvcodec_path(t: TaskSetup, video: NvpVideo, units: list[list[int]], *, repeat: int, warmup: int,
                 device: torch.device) -> PathRun:
    """Partial decode to the routed block (a clip task's window in one batch), adapter, backbone tail, head."""
    segs = [(_segment(video, u), u) for u in units]
    run = PathRun(timing=None)  # type: ignore[arg-type]

    def one_pass(clock: StageClock, i: int) -> None:
        for seg, u in segs:
            raw, preds = _nvcodec_unit(clock, t, video, seg, u, device)
            if i == 0:
                _keep(run, t.name, raw, preds)

    run.timing = measure_passes(one_pass, frames=len(units), repeat=repeat, warmup=warmup, device=device)
    return run


# --- several tasks at once -------------------------------------------------------

@torch.inference_mode()
def shared_units(units: list[list[list[int]]]) -> list[tuple[list[int], list[list[int]]]]:
    """Per unit position: every frame the tasks' units there need (decoded once), and each task's rows in it.

    `units[t]` are task t's units; all tasks must have as many.
    """
    if len({len(u) for u in units}) != 1:
        raise UsageError("tasks benchmarked together must have as many units (frames, or windows for clip "
                         "tasks); bench per-frame and clip tasks in separate runs")
    out = []
    for per_task in zip(*units):
        frames = union_frames(per_task)
        where = {f: r for r, f in enumerate(frames)}
        out.append((frames, [[where[f] for f in u] for u in per_task]))
    return out


@torch.inference_mode()
def nvcodec_shared_path(tasks: list[TaskSetup], video: NvpVideo, units: list[list[list[int]]], *, repeat: int,
                        warmup: int, device: torch.device) -> PathRun:
    """All tasks per unit from one INR decode of the frames they need: blocks 0..k1 once, continued to
    k2, ... (the shared prefix)."""
    layers = sorted({t.inr_layer for t in tasks})
    deepest = layers[-1]
    plan = [(_segment(video, frames), frames, rows) for frames, rows in shared_units(units)]
    run = PathRun(timing=None)  # type: ignore[arg-type]

    def one_pass(clock: StageClock, i: int) -> None:
        for seg, frames, rows in plan:
            dec, _ = video.decoder(seg, deepest, device)
            x = clock.run("decode", video.inputs, seg, frames, device, deepest)
            feat, prev = x, -1
            for k in layers:
                feat = clock.run("decode", dec.continue_features, feat, prev, k)
                prev = k
                for t, r in zip(tasks, rows):
                    if t.inr_layer != k:
                        continue
                    act = clock.run("adapter", _adapt, t, video, seg, feat[r])
                    raw = clock.run("backbone", t.rt.model.forward_from, act, t.point)
                    preds = clock.run("head", _head, t, raw)
                    if i == 0:
                        _keep(run, t.name, raw, preds)

    run.timing = measure_passes(one_pass, frames=len(plan), repeat=repeat, warmup=warmup, device=device)
    return run


@torch.inference_mode()
def nvcodec_separate_path(tasks: list[TaskSetup], video: NvpVideo, units: list[list[list[int]]], *, repeat: int,
                          warmup: int, device: torch.device) -> PathRun:
    """The same tasks, each with its own partial decode (no sharing), one after the other per unit."""
    plan = [[(_segment(video, u), u) for u in per_task] for per_task in zip(*units)]
    shared_units(units)
    run = PathRun(timing=None)  # type: ignore[arg-type]

    def one_pass(clock: StageClock, i: int) -> None:
        for per_task in plan:
            for t, (seg, u) in zip(tasks, per_task):
                raw, preds = _nvcodec_unit(clock, t, video, seg, u, device)
                if i == 0:
                    _keep(run, t.name, raw, preds)

    run.timing = measure_passes(one_pass, frames=len(plan), repeat=repeat, warmup=warmup, device=device)
    return run


# --- reference and untimed outputs ------------------------------------------------

@torch.inference_mode()
def pixel_outputs(t: TaskSetup, frames: np.ndarray | torch.Tensor, units: list[list[int]],
                  device: torch.device) -> tuple[list[Any], list[list[dict]]]:
    """Full backbone on the given uint8 frames (e.g. the original ones): raw outputs and predictions per unit."""
    raws, preds = [], []
    for u in units:
        raw = t.rt.model(t.rt.pixel_input(_frames(frames, u, device)))
        raws.append(detach(raw))
        preds.extend(_head(t, raw))
    return raws, preds


@torch.inference_mode()
def nvcodec_outputs(t: TaskSetup, video: NvpVideo, units: list[list[int]],
                    device: torch.device) -> tuple[list[Any], list[list[dict]]]:
    """The nvcodec path's outputs without timing (for rate-accuracy points)."""
    clock = StageClock(None)
    raws, preds = [], []
    for u in units:
        raw, p = _nvcodec_unit(clock, t, video, _segment(video, u), u, device)
        raws.append(detach(raw))
        preds.extend(p)
    return raws, preds


# --- agreement ----------------------------------------------------------------------

def agreement(t: TaskSetup, raws: list[Any], preds: list[list[dict]], ref_raws: list[Any],
              ref_preds: list[list[dict]]) -> dict[str, Any]:
    """How well a path reproduces the reference (backbone on the original frames).

    Classification: top-1 agreement and mean KL(reference || path); detection: mAP@0.5 and
    mAP@0.5:0.95 taking the reference detections as ground truth (null when the reference
    has no detection above the threshold); captions: token agreement and BLEU-4. All: the
    task's fidelity score (1 = identical).
    """
    spec = t.rt.spec
    a, r = spec.concat_raw(raws), spec.concat_raw(ref_raws)
    if spec.output_type == "classification":
        out = classification_agreement(a if isinstance(a, torch.Tensor) else a["logits"],
                                       r if isinstance(r, torch.Tensor) else r["logits"])
    elif spec.output_type == "caption":
        out = caption_agreement(a["tokens"], r["tokens"])
    else:
        out = {"map50": detection_map(preds, ref_preds),
               "map50_95": detection_map(preds, ref_preds, tuple(0.5 + 0.05 * i for i in range(10))),
               "reference_boxes": int(sum(len(f) for f in ref_preds)), "boxes": int(sum(len(f) for f in preds)),
               "frames": len(preds)}
        if out["map50"] is None:
            out["map_note"] = f"null: the reference found no detection above the threshold {t.threshold}"
    out["fidelity"] = float(spec.fidelity(a, r))
    return out


# --- FLOPs ------------------------------------------------------------------------------

def _g(flops: int) -> float | None:
    return flops / 1e9 if flops > 0 else None


def _total(stages: dict[str, float | None]) -> float:
    return float(sum(v for v in stages.values() if v is not None))


@torch.inference_mode()
def codec_flops(t: TaskSetup, frames: np.ndarray, device: torch.device) -> dict[str, float | None]:
    """GFLOPs per unit (`frames`: its uint8 frames) of the codec path's stages (decode: null)."""
    fr = torch.from_numpy(np.ascontiguousarray(frames)).to(device)
    x, f_pre = count_flops(t.rt.pixel_input, fr)
    raw, f_bb = count_flops(t.rt.model, x)
    _, f_head = count_flops(_head, t, raw)
    stages = {"decode": None, "preprocess": _g(f_pre), "backbone": _g(f_bb), "head": _g(f_head)}
    return {**stages, "total": _total(stages)}


@torch.inference_mode()
def inr_pixels_flops(t: TaskSetup, video: NvpVideo, unit: list[int], device: torch.device) -> dict[str, float | None]:
    """GFLOPs per unit of the INR full-decode path: decoder blocks + RGB head, then the full backbone."""
    seg = _segment(video, unit)
    dec, _ = video.decoder(seg, None, device)
    x_in = video.inputs(seg, unit, device, None)
    _, f_dec = count_flops(dec, x_in)
    frames = video.frames(unit, device=device)
    x, f_pre = count_flops(t.rt.pixel_input, frames)
    raw, f_bb = count_flops(t.rt.model, x)
    _, f_head = count_flops(_head, t, raw)
    stages = {"decode": _g(f_dec), "preprocess": _g(f_pre), "backbone": _g(f_bb), "head": _g(f_head)}
    return {**stages, "total": _total(stages)}


@torch.inference_mode()
def nvcodec_flops(t: TaskSetup, video: NvpVideo, unit: list[int], device: torch.device) -> dict[str, float | None]:
    """GFLOPs per unit of the nvcodec path: blocks 0..k, adapter 1x1 conv, backbone tail from the point."""
    seg = _segment(video, unit)
    feat, f_dec = count_flops(_partial_decode, video, seg, unit, t.inr_layer, device)
    act, f_ad = count_flops(_adapt, t, video, seg, feat)
    raw, f_tail = count_flops(t.rt.model.forward_from, act, t.point)
    _, f_head = count_flops(_head, t, raw)
    stages = {"decode": _g(f_dec), "adapter": _g(f_ad), "backbone": _g(f_tail), "head": _g(f_head)}
    return {**stages, "total": _total(stages)}


@torch.inference_mode()
def shared_flops(tasks: list[TaskSetup], video: NvpVideo, units: list[list[int]],
                 device: torch.device) -> dict[str, float | None]:
    """GFLOPs per unit of the shared-prefix path: INR blocks 0..max(k) once on the frames the tasks' first
    units need, plus every task's adapter and tail (`units`: each task's first unit)."""
    frames = union_frames(units)
    seg = _segment(video, frames)
    deepest = max(t.inr_layer for t in tasks)
    _, f_dec = count_flops(_partial_decode, video, seg, frames, deepest, device)
    per_task = [nvcodec_flops(t, video, u, device) for t, u in zip(tasks, units)]
    stages = {"decode": _g(f_dec)}
    for key in ("adapter", "backbone", "head"):
        vals = [p[key] for p in per_task if p[key] is not None]
        stages[key] = float(sum(vals)) if vals else None
    return {**stages, "total": _total(stages)}
