"""`infer()`: tasks served from the INR: partial decode, adapter, backbone tail, head; no pixels."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any, Callable, Iterator

import torch

from ..codec.frames import resolve_range
from ..codec.video import NvpVideo, Segment, open as open_nvp, resolve_device
from ..errors import NotAttachedError, UsageError
from .adapter import MicroAdapter
from ..models.agreement import caption_agreement, classification_agreement, detection_map
from .flops import count_flops
from ..models.registry import TaskSpec, resolve_task, zero_shot_names
from ..codec.meta import read_routing
from .source import source_frames
from .clips import clip_rows, plan_windows, union_frames
from .runtime import TaskRuntime, build_runtime, inr_to_geometry, load_adapters, pixel_path_flops

RANDOM_NOTE = "random weights: pipeline check only, predictions are meaningless"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Clock:
    """Accumulates wall time per stage, synchronising CUDA around each measurement."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.ms: dict[str, float] = {}

    def run(self, stage: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        _sync(self.device)
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        _sync(self.device)
        self.ms[stage] = self.ms.get(stage, 0.0) + (time.perf_counter() - t) * 1000
        return out


@dataclass
class TaskRun:
    """One task's route on one video during a run: its runtime, adapters, clock and outputs so far.

    `need`: the frames this task needs from the shared decode (None: every decoded frame);
    `threshold`: this task's detection threshold (None: the run's).
    """

    name: str
    entry: dict
    rt: TaskRuntime
    adapters: dict[int, MicroAdapter]
    clock: Clock
    frames: list[dict] = field(default_factory=list)
    raw_adapter: list[Any] = field(default_factory=list)
    raw_pixel: list[Any] = field(default_factory=list)
    pixel_preds: list[list] = field(default_factory=list)
    windows: list[list[int]] = field(default_factory=list)
    window: int = 0
    mapped: list[dict[int, torch.Tensor]] = field(default_factory=list)
    need: set[int] | None = None
    threshold: float | None = None

    @property
    def clip(self) -> bool:
        return self.rt.spec.clip is not None


def _threshold(threshold: float | None) -> dict[str, float]:
    """Head options for a score threshold: none when it is None, so each task keeps its own default."""
    return {} if threshold is None else {"threshold": float(threshold)}


def task_threshold(spec: TaskSpec, threshold: float | None) -> float | None:
    """The score threshold `spec`'s head applies: `threshold` when given, else the task's own default
    (None for heads without one, e.g. classification)."""
    if threshold is not None:
        return float(threshold)
    value = spec.default_options.get("threshold")
    return None if value is None else float(value)


def routing_entry(routing: dict, task: str, path: str) -> dict:
    entry = routing["tasks"].get(task)
    if entry is None:
        raise NotAttachedError(f"{path} has no routing for task {task!r}: run `nvcodec attach {path} --task {task}` first")
    return entry


def decode_prefix(dec: Any, x_in: torch.Tensor, layers: list[int], clock: Clock) -> Iterator[tuple[int, torch.Tensor, float]]:
    """Decode once up to the deepest of `layers`, yielding (layer, activation, ms) as each is reached.

    Each deeper layer continues from the previous activation, so the shared prefix runs once.
    """
    feat, prev = None, None
    for k in layers:
        before = clock.ms.get("decode", 0.0)
        feat = clock.run("decode", dec.features, x_in, k) if prev is None else \
            clock.run("decode", dec.continue_features, feat, prev, k)
        prev = k
        yield k, feat, clock.ms["decode"] - before


def _run_task(t: TaskRun, video: NvpVideo, seg: Segment, feat: torch.Tensor, idx: list[int], threshold: float | None) -> None:
    cfg = video.config(seg.index)
    m = video.metadata
    point = t.entry["injection_point"]
    x = t.clock.run("adapter", lambda: t.adapters[seg.index](
        inr_to_geometry(feat.float(), t.rt.geometry, m.width, m.height, cfg.pad_width, cfg.pad_height)))
    raw = t.clock.run("backbone", t.rt.model.forward_from, x, point)
    preds = t.clock.run("head", t.rt.spec.postprocess, raw, t.rt.geometry, (m.height, m.width), **_threshold(threshold),
                        model=t.rt.model)
    t.raw_adapter.append(_detach(raw))
    for i, p in zip(idx, preds):
        t.frames.append({"frame": i, "predictions": p})


def _collect_clip(t: TaskRun, video: NvpVideo, seg: Segment, feat: torch.Tensor, idx: list[int]) -> None:
    """A clip task's per-frame step: each pathway's adapter (this segment's) on the frames it needs."""
    cfg = video.config(seg.index)
    m = video.metadata
    adapter = t.adapters[seg.index]
    positions = t.rt.model.pathway_positions(t.entry["injection_point"])

    def run() -> None:
        x = inr_to_geometry(feat.float(), t.rt.geometry, m.width, m.height, cfg.pad_width, cfg.pad_height)
        for q, pos in enumerate(positions):
            need = {w[j] for w in t.windows for j in pos}
            rows = [r for r, i in enumerate(idx) if i in need]
            if rows:
                out = adapter.pathway_frames(q, x[rows])
                t.mapped[q].update({idx[r]: out[n] for n, r in enumerate(rows)})

    t.clock.run("adapter", run)


def _run_windows(t: TaskRun, threshold: float | None, batch_size: int) -> None:
    """A clip task's windows: stack each pathway's adapted frames, run the backbone tail and the head."""
    point = t.entry["injection_point"]
    positions = t.rt.model.pathway_positions(point)
    geometry = t.rt.geometry
    for s in range(0, len(t.windows), batch_size):
        batch = t.windows[s:s + batch_size]
        act = t.clock.run("adapter", lambda: [torch.stack([torch.stack([t.mapped[q][w[j]] for j in pos], 1)
                                                            for w in batch]) for q, pos in enumerate(positions)])
        raw = t.clock.run("backbone", t.rt.model.forward_from, act, point)
        preds = t.clock.run("head", t.rt.spec.postprocess, raw, geometry, geometry.frame_hw, **_threshold(threshold))
        t.raw_adapter.append(_detach(raw))
        for w, p in zip(batch, preds):
            t.frames.append({"window": [w[0], w[0] + t.window], "frames": list(w), "predictions": p})


def _clip_pixel_path(t: TaskRun, get_frames: Any, device: torch.device, threshold: float | None,
                     batch_size: int) -> tuple[dict[str, float], list[Any], list[list]]:
    """A clip task's full pixel path on its windows: frames from `get_frames(indices)`, each decoded once."""
    c = Clock(device)
    union = union_frames(t.windows)
    frames = c.run("decode", get_frames, union)
    rows = clip_rows(t.windows, union)
    raws: list[Any] = []
    preds: list[list] = []
    for s in range(0, len(t.windows), batch_size):
        sel = rows[s * t.rt.clip_len:(s + batch_size) * t.rt.clip_len]
        x = c.run("preprocess", t.rt.pixel_input, frames[sel].to(device))
        raw = c.run("backbone", t.rt.model, x)
        preds.extend(c.run("head", t.rt.spec.postprocess, raw, t.rt.geometry, t.rt.geometry.frame_hw,
                           **_threshold(threshold)))
        raws.append(_detach(raw))
    return c.ms, raws, preds


def _detach(raw: Any) -> Any:
    if isinstance(raw, torch.Tensor):
        return raw.detach().float().cpu()
    if isinstance(raw, dict):
        return {k: _detach(v) for k, v in raw.items()}
    if isinstance(raw, (list, tuple)):
        return type(raw)(_detach(v) for v in raw)
    return raw


def _cat(raws: list[Any]) -> Any:
    first = raws[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(raws)
    if isinstance(first, dict):
        return {k: _cat([r[k] for r in raws]) for k in first}
    if isinstance(first, (list, tuple)):
        return type(first)(_cat(list(v)) for v in zip(*raws))
    return raws


@torch.inference_mode()
def task_gflops(video: NvpVideo, t: TaskRun, device: torch.device) -> dict:
    """GFLOPs per frame (per window for a clip task) of the adapter path and of the pixel path."""
    seg = video.segments[0]
    k, point = t.entry["inr_layer"], t.entry["injection_point"]
    m = video.metadata
    cfg = video.config(0)
    dec_full, _ = video.decoder(seg, None, device)
    x_in = video.inputs(seg, [seg.start] * t.rt.clip_len, device, None)
    feat, f_dec = count_flops(dec_full.features, x_in, k)
    act, f_ad = count_flops(lambda f: t.adapters[0](inr_to_geometry(f.float(), t.rt.geometry, m.width, m.height,
                                                                    cfg.pad_width, cfg.pad_height)), feat)
    _, f_tail = count_flops(t.rt.model.forward_from, act, point)
    f_full, f_backbone = pixel_path_flops(video, t.rt, device)
    adapter_path = (f_dec + f_ad + f_tail) / 1e9
    pixel_path = (f_full + f_backbone) / 1e9
    return {"adapter_path": adapter_path, "decode": f_dec / 1e9, "adapter": f_ad / 1e9, "backbone_tail": f_tail / 1e9,
            "pixel_path": pixel_path, "pixel_decode": f_full / 1e9, "pixel_backbone": f_backbone / 1e9,
            "reduction_pct": 100.0 * (1 - adapter_path / pixel_path) if pixel_path else 0.0}


def _pixel_path(video: NvpVideo, tasks: list[TaskRun], idx_batches: list[list[int]], device: torch.device,
                threshold: float | None) -> dict[str, dict]:
    m = video.metadata
    clocks = {t.name: Clock(device) for t in tasks}
    for idx in idx_batches:
        shared = Clock(device)
        frames = shared.run("decode", video.frames, idx, device=device)
        for t in tasks:
            c = clocks[t.name]
            c.ms["decode"] = c.ms.get("decode", 0.0) + shared.ms["decode"]
            x = c.run("preprocess", t.rt.pixel_input, frames)
            raw = c.run("backbone", t.rt.model, x)
            preds = c.run("head", t.rt.spec.postprocess, raw, t.rt.geometry, (m.height, m.width), **_threshold(threshold),
                          model=t.rt.model)
            t.raw_pixel.append(_detach(raw))
            t.pixel_preds.extend(preds)
    return {name: c.ms for name, c in clocks.items()}


def _agreement(t: TaskRun, raws: list[Any], preds: list[list[dict]], ref_raws: list[Any], ref_preds: list[list]) -> dict:
    """Agreement of one path's outputs (`raws`, `preds`) with a reference path's."""
    a, p = _cat(raws), _cat(ref_raws)
    if t.rt.spec.output_type == "classification":
        return classification_agreement(a if isinstance(a, torch.Tensor) else a["logits"],
                                        p if isinstance(p, torch.Tensor) else p["logits"])
    if t.rt.spec.output_type == "caption":
        return {**caption_agreement(a["tokens"], p["tokens"]), "fidelity": float(t.rt.spec.fidelity(a, p))}
    return {"map50": detection_map(preds, ref_preds),
            "map50_95": detection_map(preds, ref_preds, tuple(0.5 + 0.05 * i for i in range(10))),
            "reference_boxes": int(sum(len(f) for f in ref_preds)),
            "adapter_boxes": int(sum(len(f) for f in preds)),
            "fidelity": float(t.rt.spec.fidelity(a, p))}


def _source_path(video: NvpVideo, tasks: list[TaskRun], source: str, frames: list[int], batch_size: int,
                 device: torch.device, threshold: float | None) -> dict[str, tuple[list[Any], list[list]]]:
    """Each task's full pixel path on the original video's frames: (raw outputs, predictions)."""
    m = video.metadata
    out: dict[str, tuple[list[Any], list[list]]] = {t.name: ([], []) for t in tasks}
    for s in range(0, len(frames), batch_size):
        pixels = source_frames(video, source, frames[s:s + batch_size]).to(device)
        for t in tasks:
            raw = t.rt.model(t.rt.pixel_input(pixels))
            out[t.name][0].append(_detach(raw))
            out[t.name][1].extend(t.rt.spec.postprocess(raw, t.rt.geometry, (m.height, m.width), **_threshold(threshold),
                                                        model=t.rt.model))
    return out


def _per_frame(ms: dict[str, float], n: int) -> dict[str, float]:
    out = {k: v / n for k, v in ms.items()}
    out["total"] = sum(out.values())
    return out


def task_runtime(video: NvpVideo, spec: TaskSpec, entry: dict, weights: str | None, device: torch.device,
                 labels: Sequence[str] | None = None) -> TaskRuntime:
    """The backbone a routing entry runs on (built once per process and reused; see `build_runtime`).

    The file only says whether its adapter was trained on a random backbone; a path or model id
    recorded in it is never followed (a hostile file must not pick what gets loaded). Random
    backbones are calibrated on the entry's sample frames, as attach did.
    """
    m = video.metadata
    w = weights or (entry.get("weights") if entry.get("weights") in ("random", "random-tiny") else None)
    calib = None
    if entry.get("weights_random") or w in ("random", "random-tiny"):
        calib = video.frames((entry.get("sample_frames") or [0])[:64], device=device)
    return build_runtime(spec, w, device, m.width, m.height, calibration_frames=calib,
                         labels=labels if spec.zero_shot else None, reuse=True)


def plan_clip(t: TaskRun, start: int, stop: int, window: int | None, stride: int | None) -> None:
    """A clip task's windows over [start, stop) (see `infer`); per-frame tasks are left alone."""
    if not t.clip:
        return
    span = t.rt.spec.clip.span(t.rt.tiny)
    t.windows = plan_windows(start, stop, t.rt.clip_len, window or span, stride)
    t.window = min(window or span, stop - start)
    t.mapped = [{} for _ in t.rt.model.pathways]


PrefixSource = Callable[[Segment, list[int], list[int], Clock], Iterator[tuple[int, torch.Tensor, float]]]
"""(segment, frames, layers ascending, clock) -> (layer, activation, decode ms) for each layer, shallowest first."""


def decoded_prefix(video: NvpVideo, device: torch.device) -> PrefixSource:
    """The plain prefix source: decode each batch up to its deepest layer, once (`decode_prefix`)."""
    def source(seg: Segment, idx: list[int], layers: list[int], clock: Clock) -> Iterator[tuple[int, torch.Tensor, float]]:
        dec, _ = video.decoder(seg, layers[-1], device)
        x_in = clock.run("decode", video.inputs, seg, idx, device, layers[-1])
        return decode_prefix(dec, x_in, layers, clock)
    return source


def _wanted(t: TaskRun, idx: list[int]) -> list[int]:
    """Rows of `idx` that task `t` needs."""
    if t.need is None:
        return list(range(len(idx)))
    return [r for r, i in enumerate(idx) if i in t.need]


def run_routes(video: NvpVideo, runs: list[TaskRun], decode_list: list[int], batch_size: int, device: torch.device,
               threshold: float | None, shared: Clock, prefix: PrefixSource | None = None,
               check: Callable[[], None] | None = None) -> tuple[dict[int, float], list[list[int]]]:
    """Every task's route over `decode_list`: per batch of frames, each INR prefix once, shared by every
    task at that layer (a deeper layer continues from a shallower one); clip windows run at the end.

    A task with `need` set runs only on those frames, and a batch decodes only the layers some task
    needs there. `prefix` gives the activations (default `decoded_prefix`); `check` runs before each
    batch (it may raise to stop the run). Returns (decode ms per layer, the frame batches).
    """
    prefix = prefix or decoded_prefix(video, device)
    decode_at: dict[int, float] = {}
    idx_batches: list[list[int]] = []
    with torch.inference_mode():
        for seg, idx in video.batches(decode_list, batch_size):
            if check is not None:
                check()
            idx_batches.append(idx)
            rows = {id(t): _wanted(t, idx) for t in runs}
            layers = sorted({t.entry["inr_layer"] for t in runs if rows[id(t)]})
            if not layers:
                continue
            for k, feat, ms in prefix(seg, idx, layers, shared):
                decode_at[k] = decode_at.get(k, 0.0) + ms
                for t in runs:
                    r = rows[id(t)]
                    if t.entry["inr_layer"] != k or not r:
                        continue
                    th = threshold if t.threshold is None else t.threshold
                    if t.clip:
                        _collect_clip(t, video, seg, feat, idx)
                    elif len(r) == len(idx):
                        _run_task(t, video, seg, feat, idx, th)
                    else:
                        _run_task(t, video, seg, feat[r], [idx[j] for j in r], th)
        for t in runs:
            if t.clip and t.windows:
                if check is not None:
                    check()
                _run_windows(t, threshold if t.threshold is None else t.threshold, batch_size)
    return decode_at, idx_batches


def task_report(t: TaskRun, timing_ms: dict[str, float], gflops: dict, stride: int | None,
                threshold: float | None = None) -> dict:
    """One task's entry in an infer report (without the comparison keys); `threshold` is the run's
    (the task's own, `t.threshold`, wins; the report gives the one its head applied)."""
    r = {
        "task": t.name, "output_type": t.rt.spec.output_type, "inr_layer": t.entry["inr_layer"],
        "injection_point": t.entry["injection_point"], "weights": t.rt.weights_label,
        "weights_random": t.rt.random, ("windows" if t.clip else "frames"): t.frames,
        "unit": "window" if t.clip else "frame",
        "timing_ms": timing_ms, "gflops": gflops,
    }
    applied = task_threshold(t.rt.spec, threshold if t.threshold is None else t.threshold)
    if applied is not None:
        r["threshold"] = applied
    if t.clip:
        r["clip"] = {"frames_per_window": t.rt.clip_len, "window": t.window,
                     "stride": stride or t.window, "windows": len(t.windows),
                     "window_frames": sum(len(w) for w in t.windows),
                     "decoded_frames": len(union_frames(t.windows))}
    if t.rt.random:
        r["note"] = RANDOM_NOTE
    return r


def sharing_report(runs: list[TaskRun], gflops: dict[str, dict], shared_decode_ms: float,
                   separate_decode_ms: float | None) -> dict:
    """The `sharing` entry of a report on several tasks: decode time and GFLOPs, shared vs separate."""
    flops = {t.name: gflops[t.name]["decode"] for t in runs}
    by_layer = {t.entry["inr_layer"]: flops[t.name] for t in runs}
    return {"tasks": [t.name for t in runs], "shared_decode_ms": shared_decode_ms,
            "separate_decode_ms": separate_decode_ms,
            "shared_gflops": max(by_layer.values()), "separate_gflops": sum(flops.values()),
            "prefix_decoded_once": True}


def infer(path: str, tasks: Sequence[str | TaskSpec], *, frames: tuple[int | None, int | None] | None = None,
          weights: str | None = None, threshold: float | None = None, compare_pixels: bool = False,
          source: str | None = None, device: str = "auto", batch_size: int = 4, beams: int = 1,
          labels: Sequence[str] | None = None, window: int | None = None, stride: int | None = None) -> dict:
    """Run `tasks` (names, each looked up here once, or their `TaskSpec`s) on frames of the `.nvp` at
    `path` through their attached adapters.

    `labels` replaces the label set of the zero-shot tasks among `tasks` (UsageError when there is none).
    Clip tasks report per window: windows of `window` video frames (default: the task's span,
    at most the range) every `stride` frames (default: `window`); every frame the windows need
    is decoded and adapted once, however many windows share it.

    `compare_pixels` also runs the pixel path (full decode + preprocessing + full backbone) and
    reports agreement with it; `source` (the original video) reports agreement with the full
    backbone on the original frames, for the adapter path and (with `compare_pixels`) the pixel path.
    `beams`: beam search width of generative heads (captions; 1 = greedy). `threshold`: detection
    score threshold for every detection task; None keeps each task's own default (`task_threshold`:
    0.7 for detr, 0.35 for nanodet), which each task's report gives as ``threshold``.
    """
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise UsageError(f"--threshold must be a score in [0, 1], got {threshold}")
    if batch_size < 1:
        raise UsageError("batch size must be at least 1")
    if isinstance(beams, bool) or not isinstance(beams, int) or beams < 1:
        raise UsageError(f"--beams must be an integer >= 1, got {beams!r}")
    dev = resolve_device(device)
    specs: dict[str, TaskSpec] = {}
    for task in tasks:
        spec = resolve_task(task)
        specs.setdefault(spec.name, spec)
    if labels is not None and not any(spec.zero_shot for spec in specs.values()):
        raise UsageError(f"--labels applies to zero-shot tasks ({', '.join(zero_shot_names())})")
    with open_nvp(path) as video:
        routing = read_routing(video.reader)
        start, stop = resolve_range(frames, len(video))
        runs: list[TaskRun] = []
        for name, spec in specs.items():
            entry = routing_entry(routing, name, path)
            rt = task_runtime(video, spec, entry, weights, dev, labels)
            rt.model.set_decoding(beams)
            t = TaskRun(name, entry, rt, load_adapters(video, entry, rt, dev), Clock(dev))
            plan_clip(t, start, stop, window, stride)
            runs.append(t)

        layers = sorted({t.entry["inr_layer"] for t in runs})
        deepest = layers[-1]
        shared = Clock(dev)
        frame_runs = [t for t in runs if not t.clip]
        needed = set(range(start, stop)) if frame_runs else set()
        for t in runs:
            needed.update(union_frames(t.windows))
        decode_list = sorted(needed)
        decode_at, idx_batches = run_routes(video, runs, decode_list, batch_size, dev, threshold, shared)
        with torch.inference_mode():
            n = stop - start
            cumulative = {k: sum(decode_at[j] for j in layers if j <= k) for k in layers}
            gflops = {t.name: task_gflops(video, t, dev) for t in runs}
            sharing = None
            if len(runs) > 1:
                separate = Clock(dev)
                for seg, idx in video.batches(list(range(start, stop)), batch_size):
                    dec, _ = video.decoder(seg, deepest, dev)
                    for t in runs:
                        x_in = separate.run("decode", video.inputs, seg, idx, dev, deepest)
                        separate.run("decode", dec.features, x_in, t.entry["inr_layer"])
                sharing = sharing_report(runs, gflops, shared.ms["decode"] / n, separate.ms["decode"] / n)
            pixel_ms = _pixel_path(video, frame_runs, idx_batches, dev, threshold) if compare_pixels else {}
            on_source = _source_path(video, frame_runs, source, list(range(start, stop)), batch_size, dev, threshold) \
                if source and frame_runs else {}
            for t in runs:
                if not t.clip:
                    continue
                if compare_pixels:
                    pixel_ms[t.name], t.raw_pixel, t.pixel_preds = _clip_pixel_path(
                        t, lambda i: video.frames(i, device=dev), dev, threshold, batch_size)
                if source:
                    _, ref_raw, ref_preds = _clip_pixel_path(t, lambda i: source_frames(video, source, i), dev,
                                                             threshold, batch_size)
                    on_source[t.name] = (ref_raw, ref_preds)
            report_tasks = {}
            for t in runs:
                t.clock.ms = {"decode": cumulative[t.entry["inr_layer"]], **t.clock.ms}
                units = len(t.windows) if t.clip else n
                if t.clip:
                    # The shared decode covered every frame any task needed; charge this task its own frames.
                    t.clock.ms["decode"] *= len(union_frames(t.windows)) / len(decode_list)
                r = task_report(t, _per_frame(t.clock.ms, units), gflops[t.name], stride, threshold)
                adapter_preds = [f["predictions"] for f in t.frames]
                if compare_pixels:
                    r["pixel_timing_ms"] = _per_frame(pixel_ms[t.name], units)
                    r["agreement"] = _agreement(t, t.raw_adapter, adapter_preds, t.raw_pixel, t.pixel_preds)
                if source:
                    ref_raw, ref_preds = on_source[t.name]
                    r["agreement_source"] = _agreement(t, t.raw_adapter, adapter_preds, ref_raw, ref_preds)
                    if compare_pixels:
                        r["pixel_agreement_source"] = _agreement(t, t.raw_pixel, t.pixel_preds, ref_raw, ref_preds)
                report_tasks[t.name] = r
    out = {"file": str(path), "frames": [start, stop], "device": str(dev), "threshold": threshold, "tasks": report_tasks}
    if sharing:
        out["sharing"] = sharing
    return out
