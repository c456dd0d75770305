"""`attach()`: score (INR block, injection point) pairs, train adapters for the best, append the winner.

1. Sample frames of the video; the *teacher* is the task's full pixel path on them: on the
   INR-decoded frames, or, with `source`, on the original video's frames.
2. Score every pair two ways on held-out sample frames: linear CKA (the paper's ranking) and
   ``lstsq``, the task fidelity of the closed-form least-squares 1x1 adapter run through the
   frozen backbone tail. Pairs costing more than `max_cost` x the pixel path's FLOPs drop out.
   `search` picks the ranking that chooses the candidates (``lstsq`` by default; ``exhaustive``
   trains every pair).
3. For each candidate pair and adapter kind within the parameter budget, fit the adapter on the
   composite feature loss plus distillation of the task output through the frozen tail.
4. The best held-out fidelity wins, near-ties (within `TIE`) broken by total GFLOPs per frame.

The routing entry and the adapters are appended under the file's lock, merged into the latest
routing: INR sections stay byte-identical and concurrent attaches of other tasks are kept.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import torch

from ..codec.meta import read_routing
from ..codec.video import NvpVideo, open as open_nvp, resolve_device
from ..container import NvpReader, Section, SectionKind, append_nvp, pack_msgpack
from ..errors import LowFidelityError, UsageError
from ..progress import ProgressCallback, emit
from ..route.adapter import ADAPTER_BITS, ADAPTER_KINDS, MicroAdapter, TaskDistill, adapter_parameters, fit_adapter
from .cka import rank_pairs, top_count
from .holdout import DISTILL_LR, FEATURE_LR, HOLDOUT_FRACTION, split as _split  # noqa: F401 - HOLDOUT_FRACTION re-exported
from . import clip_attach
from ..models.registry import TaskSpec, resolve_task
from ..route.flops import count_flops
from ..route.source import source_frames
from ..route.runtime import (
    TaskRuntime, adapter_section_name, build_runtime, inr_to_geometry, pixel_path_flops, sample_indices,
)

DEFAULT_SAMPLE = {"classification": 32, "detection": 12}
TIE = 0.01
SEARCHES = ("lstsq", "cka", "exhaustive")
DEFAULT_KINDS = ("linear", "patch", "bottleneck")
MAX_ADAPTER_PCT = 1.0
"""Adapters above this share of the backbone's parameters are not trained (``linear`` always is)."""
MAX_COST = 0.5
"""Pairs whose path costs more than this share of the pixel path's FLOPs are not candidates."""
FIDELITY_FLOOR = 0.6
"""Best held-out fidelity below which attach warns (and ``strict`` refuses to append). Fidelity is
the task's score of the adapter path against the teacher, 1 when identical (classification: half
top-1 agreement, half mean exp(-KL)): below 0.6 the adapter path disagrees with the teacher on
most frames or spreads its probability very differently."""
CKA_ZERO = 1e-6
FEATURE_VARIATION_MIN = 1e-3
QUANT_TOLERANCE = 0.002
"""The chosen adapter is stored with ADAPTER_BITS-bit weights when that lowers its held-out fidelity by
at most this much, else as float16."""
DISTILL_WEIGHT = 1.0


@dataclass(eq=False)
class Candidate:
    """One (INR block, injection point) pair: its scores and the adapters trained for it."""

    inr_layer: int
    injection_point: str
    cka: float
    lstsq: float
    gflops: float | None = None
    trained: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def key(self) -> tuple[int, str]:
        return self.inr_layer, self.injection_point


def _features(video: NvpVideo, rt: TaskRuntime, layers: range, idx: list[int], seg: int,
              device: torch.device) -> dict[int, torch.Tensor]:
    """Block activations mapped onto the task's view of the frame, for every layer in `layers`.

    One decode per batch of frames: each deeper block continues from the previous one's output.
    """
    cfg = video.config(seg)
    m = video.metadata
    out: dict[int, list[torch.Tensor]] = {k: [] for k in layers}
    segment = video.segments[seg]
    with torch.no_grad():
        dec, _ = video.decoder(segment, max(layers), device)
        for s in range(0, len(idx), 8):
            x = video.inputs(segment, idx[s:s + 8], device, max(layers))
            prev = -1
            for k in layers:
                x = dec.continue_features(x, prev, k)
                prev = k
                out[k].append(inr_to_geometry(x.float(), rt.geometry, m.width, m.height, cfg.pad_width,
                                              cfg.pad_height).clone())
    return {k: torch.cat(v) for k, v in out.items()}


def _segment_frames(video: NvpVideo, seg: int, count: int) -> list[int]:
    s = video.segments[seg]
    return [s.start + i for i in sample_indices(s.stop - s.start, count)]


def _teacher(rt: TaskRuntime, pixels: torch.Tensor, points: tuple[str, ...]) -> tuple[dict[str, torch.Tensor], Any]:
    """Backbone activations at every point and the raw task output, on preprocessed `pixels`."""
    with torch.no_grad():
        acts, raw = rt.model.forward_all(rt.pixel_input(pixels))
    return {p: _detach(acts[p]) for p in points}, _detach(raw)


def _detach(raw: Any) -> Any:
    if isinstance(raw, torch.Tensor):
        return raw.detach().float()
    if isinstance(raw, dict):
        return {k: _detach(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_detach(v) for v in raw]
    return raw


def _take(raw: Any, idx: list[int]) -> Any:
    if isinstance(raw, torch.Tensor):
        return raw[idx]
    return {k: v[idx] for k, v in raw.items()}


def _fidelity(rt: TaskRuntime, adapter: MicroAdapter, feat: torch.Tensor, point: str, teacher: Any,
              idx: list[int]) -> float:
    """Task fidelity of `adapter`'s path on frames `idx` against the teacher outputs."""
    with torch.no_grad():
        out = rt.model.forward_from(adapter(feat[idx]), point)
    return float(rt.spec.fidelity(out, _take(teacher, idx)))


@torch.inference_mode()
def _cost_gflops(video: NvpVideo, rt: TaskRuntime, layer: int, point: str, adapter: torch.nn.Module,
                 inr_feat: torch.Tensor, device: torch.device) -> float:
    """FLOPs per frame of partial decode to `layer` + adapter + backbone tail from `point`."""
    dec, _ = video.decoder(video.segments[0], layer, device)
    x_in = video.inputs(video.segments[0], [0], device, layer)
    _, f_dec = count_flops(dec.features, x_in, layer)
    act, f_ad = count_flops(adapter, inr_feat[:1])
    _, f_tail = count_flops(rt.model.forward_from, act, point)
    return (f_dec + f_ad + f_tail) / 1e9


def _check_args(top_k: float, epochs: int, search: str, kinds: tuple[str, ...], distill: float,
                max_cost: float) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, (int, float)) or top_k <= 0:
        raise UsageError("--top-k must be positive (a fraction < 1, or a count >= 1)")
    if epochs < 0:
        raise UsageError("--epochs must be at least 0")
    if search not in SEARCHES:
        raise UsageError(f"--search must be one of {', '.join(SEARCHES)}")
    if not kinds or any(k not in ADAPTER_KINDS for k in kinds):
        raise UsageError(f"--kinds must name adapter kinds from {', '.join(ADAPTER_KINDS)}")
    if not (distill >= 0 and np.isfinite(distill)):
        raise UsageError("--distill must be a weight >= 0")
    if not (max_cost >= 0 and np.isfinite(max_cost)):
        raise UsageError("--max-cost must be a share of the pixel path's GFLOPs >= 0 (0: no cap)")


def _top_k_value(top_k: float) -> float | int:
    """CLI convention: values >= 1 are counts, below 1 fractions."""
    return int(top_k) if top_k >= 1 else float(top_k)


@dataclass
class AttachData:
    """Everything scoring and training need, for one segment's frame sample."""

    video: NvpVideo
    rt: TaskRuntime
    frames: list[int]
    inr: dict[int, torch.Tensor]
    targets: dict[str, torch.Tensor]
    teacher: Any
    train: list[int]
    val: list[int]
    device: torch.device

    @property
    def backbone_params(self) -> int:
        return int(self.rt.model.num_parameters())


def prepare(video: NvpVideo, spec: TaskSpec | str, weights: str | None, sample_frames: int | None,
            device: torch.device, source: str | None = None, source_stream: int | None = None, segment: int = 0,
            rt: TaskRuntime | None = None) -> AttachData:
    """Sample a segment's frames; build the backbone (unless `rt` is given); compute INR features at
    every block, backbone activations at every point and the teacher's raw outputs.

    `spec`: the task's `TaskSpec` (attach passes it), or its name for callers outside attach.
    """
    spec = resolve_task(spec)
    count = sample_frames or DEFAULT_SAMPLE.get(spec.output_type, 16)
    if count < 2:
        raise UsageError("--frames (the attach sample) must be at least 2")
    m = video.metadata
    idx = _segment_frames(video, segment, count)
    decoded = video.frames(idx, device=device)
    if rt is None:
        rt = build_runtime(spec, weights, device, m.width, m.height, calibration_frames=decoded)
    pixels = source_frames(video, source, idx, source_stream).to(device) if source else decoded
    targets, teacher = _teacher(rt, pixels, spec.injection_points)
    inr = _features(video, rt, range(video.num_layers), idx, segment, device)
    n = len(idx)
    if n == 1:
        # A one-frame segment: the adapter is fitted and validated on that frame.
        inr = {k: v.repeat(2, 1, 1, 1) for k, v in inr.items()}
        targets = {p: v.repeat(2, 1, 1, 1) for p, v in targets.items()}
        teacher, n = _take(teacher, [0, 0]), 2
    train, val = _split(n)
    return AttachData(video, rt, idx, inr, targets, teacher, train, val, device)


@torch.inference_mode()
def _stage_flops(data: AttachData) -> tuple[dict[int, int], dict[str, int]]:
    """FLOPs per frame of partial decode to each block, and of the backbone tail from each point."""
    seg = data.video.segments[0]
    dec, _ = data.video.decoder(seg, None, data.device)
    x_in = data.video.inputs(seg, [seg.start], data.device, None)
    decode = {k: count_flops(dec.features, x_in, k)[1] for k in data.inr}
    tail = {p: count_flops(data.rt.model.forward_from, t[:1], p)[1] for p, t in data.targets.items()}
    return decode, tail


def score_pairs(data: AttachData) -> list[Candidate]:
    """Every (block, point) pair with its CKA, its least-squares adapter's held-out fidelity and its
    GFLOPs per frame (partial decode + that adapter + backbone tail)."""
    sizes = {p: tuple(t.shape[-2:]) for p, t in data.targets.items()}
    ranked = rank_pairs(data.inr, data.targets, sizes, debiased=data.inr[0].shape[0] >= 4)
    decode, tail = _stage_flops(data)
    out = []
    for pair in ranked:
        k, p = pair.inr_layer, pair.injection_point
        ls = fit_adapter(data.inr[k], data.targets[p], train_indices=data.train, val_indices=data.val, epochs=0,
                         device=data.device)
        with torch.inference_mode():
            f_ad = count_flops(ls.adapter, data.inr[k][:1])[1]
        out.append(Candidate(k, p, pair.cka, _fidelity(data.rt, ls.adapter, data.inr[k], p, data.teacher, data.val),
                             (decode[k] + f_ad + tail[p]) / 1e9))
    return out


def within_cost(data: AttachData, cands: list[Candidate], max_cost: float) -> tuple[list[Candidate], float]:
    """The pairs costing at most `max_cost` x the pixel path's GFLOPs (all of them when `max_cost`
    is 0; possibly none), and the pixel path's GFLOPs per frame."""
    pixel = sum(pixel_path_flops(data.video, data.rt, data.device)) / 1e9
    return [c for c in cands if not max_cost or c.gflops <= max_cost * pixel], pixel


def kinds_within_budget(data: AttachData, cand: Candidate, kinds: tuple[str, ...],
                        max_adapter_pct: float = MAX_ADAPTER_PCT) -> list[str]:
    """The kinds of `kinds` whose adapter for this pair fits the parameter budget (``linear`` always does)."""
    ci, co = int(data.inr[cand.inr_layer].shape[1]), int(data.targets[cand.injection_point].shape[1])
    return [k for k in kinds
            if k == "linear" or 100.0 * adapter_parameters(k, ci, co) / data.backbone_params <= max_adapter_pct]


def train_candidate(data: AttachData, cand: Candidate, kind: str, *, epochs: int = 30,
                    distill: float = DISTILL_WEIGHT, seed: int = 0) -> dict[str, Any]:
    """Fit one adapter for `cand` and record its held-out fidelity and GFLOPs per frame in `cand.trained`."""
    k, p = cand.key
    fit = _fit(data.rt, data.inr[k], data.targets[p], data.teacher, p, kind, data.train, data.val, epochs, distill,
               seed, data.device)
    stored = fit.adapter.stored()
    result = {"adapter": fit.adapter, "fit": fit, "bits": None,
              "fidelity": _fidelity(data.rt, stored, data.inr[k], p, data.teacher, data.val),
              "gflops": _cost_gflops(data.video, data.rt, k, p, stored, data.inr[k], data.device)}
    cand.trained[kind] = result
    return result


def stored_as(data: AttachData, cand: Candidate, result: dict[str, Any], bits: int | None) -> dict[str, Any]:
    """A trained result to be stored with `bits`-bit weights, with the held-out fidelity of the adapter so stored.

    ``result["adapter"]`` stays the float32 adapter that `MicroAdapter.pack` quantizes.
    """
    if bits == result.get("bits"):
        return result
    k, p = cand.key
    stored = result["adapter"].stored(bits)
    return {**result, "bits": bits, "fidelity": _fidelity(data.rt, stored, data.inr[k], p, data.teacher, data.val)}


def storage_bits(data: AttachData, cand: Candidate, best: dict[str, Any]) -> tuple[int | None, dict[str, Any]]:
    """(ADAPTER_BITS, the quantized result) when quantizing the chosen adapter's weights costs at most
    QUANT_TOLERANCE of held-out fidelity, else (None, `best`: float16)."""
    quantized = stored_as(data, cand, best, ADAPTER_BITS)
    if quantized["fidelity"] < best["fidelity"] - QUANT_TOLERANCE:
        return None, best
    return ADAPTER_BITS, quantized


def choose(cands: list[Candidate], tie: float = TIE) -> tuple[Candidate, str, dict[str, Any]]:
    """The trained adapter with the best held-out fidelity; within `tie` of it, the fewest GFLOPs."""
    results = [(c, kind, t) for c in cands for kind, t in c.trained.items()]
    if not results:
        raise UsageError("no adapter was trained")
    best = max(t["fidelity"] for _, _, t in results)
    near = [r for r in results if r[2]["fidelity"] >= best - tie]
    return min(near, key=lambda r: (r[2]["gflops"], -r[2]["fidelity"]))


def feature_variation(inr: dict[int, torch.Tensor], time_channel: bool = False) -> float:
    """How much the INR's features change across the sampled frames: the largest, over blocks, share
    of a block's feature energy that is not common to every frame (0: identical for all frames).
    `time_channel`: the maps' last channel is HiNeRV's frame time (left out: it varies by construction)."""
    best = 0.0
    for t in inr.values():
        if time_channel and t.ndim >= 2 and t.shape[1] > 1:
            t = t[:, :-1]
        if t.shape[0] < 2:
            continue
        x = t.detach().reshape(t.shape[0], -1).double()
        energy = float(x.pow(2).mean())
        if energy > 0:
            best = max(best, float((x - x.mean(0)).pow(2).mean()) / energy)
    return best


def quality_warnings(cands: list[Candidate], fidelity: float, floor: float = FIDELITY_FLOOR,
                     variation: float | None = None) -> list[str]:
    """What makes an attach result untrustworthy: a best fidelity below `floor`, CKA 0 for every
    pair (the INR's or the backbone's features do not vary over the sampled frames), or INR features
    whose `variation` (`feature_variation`) is below FEATURE_VARIATION_MIN."""
    out = []
    if variation is not None and variation < FEATURE_VARIATION_MIN:
        out.append(f"the INR's features barely vary across the sampled frames ({variation:.1e} of their energy): "
                   "the encode may be a near-constant fit, and a high fidelity then means little; check it with "
                   "`nvcodec view --compare`")
    if fidelity < floor:
        out.append(f"best held-out fidelity {fidelity:.3f} is below the floor {floor:.2f}: the adapter path "
                   "disagrees with the teacher on many frames, so this task's outputs from the file are unreliable")
    if cands and all(abs(c.cka) <= CKA_ZERO for c in cands):
        out.append("CKA is 0 for every pair: the INR blocks' (or the backbone's) features do not vary over the "
                   "sampled frames; check the encode for a degenerate fit (`nvcodec view --compare`)")
    return out


def _prepare(video: NvpVideo, spec: TaskSpec, weights: str | None, sample: int | None, device: torch.device,
             source: str | None, source_stream: int | None, segment: int = 0,
             rt: TaskRuntime | None = None) -> "AttachData | clip_attach.ClipData":
    """`prepare`, or for a clip task `clip_attach.prepare_clip` (the sample counts windows)."""
    if spec.clip is None:
        return prepare(video, spec, weights, sample, device, source, source_stream, segment=segment, rt=rt)

    def teacher(rt_: TaskRuntime, frames: list[int], decoded: torch.Tensor, points: tuple[str, ...]) -> tuple[dict, Any]:
        pixels = source_frames(video, source, frames, source_stream).to(device) if source else decoded
        return _teacher(rt_, pixels, points)

    return clip_attach.prepare_clip(video, spec, weights, sample, device, _features, teacher, segment=segment, rt=rt)


def _train(data: Any, cand: Candidate, kind: str, epochs: int = 30, distill: float = DISTILL_WEIGHT,
           seed: int = 0) -> dict[str, Any]:
    """`train_candidate`, or for clip data `clip_attach.train_clip_candidate` (recorded in `cand.trained` too)."""
    if isinstance(data, clip_attach.ClipData):
        result = clip_attach.train_clip_candidate(data, cand.inr_layer, cand.injection_point, kind, epochs, seed)
        cand.trained[kind] = result
        return result
    return train_candidate(data, cand, kind, epochs=epochs, distill=distill, seed=seed)


def attach(path: str, task: str | TaskSpec, *, weights: str | None = None, top_k: float = 0.10, epochs: int = 30,
           sample_frames: int | None = None, device: str = "auto", seed: int = 0, search: str = "lstsq",
           kinds: tuple[str, ...] | list[str] = DEFAULT_KINDS, distill: float = DISTILL_WEIGHT,
           source: str | None = None, source_stream: int | None = None,
           max_adapter_pct: float = MAX_ADAPTER_PCT, max_cost: float = MAX_COST, strict: bool = False,
           progress: ProgressCallback | None = None) -> dict:
    """Attach `task` (a name, looked up here once, or its `TaskSpec`) to the `.nvp` at `path` (appends
    routing + adapters; INR sections stay byte-identical).

    `search`: ``lstsq`` (rank pairs by the fidelity of their least-squares adapter), ``cka``, or
    ``exhaustive`` (train every pair); `top_k` pairs are trained, each with every adapter kind in
    `kinds` that fits `max_adapter_pct` of the backbone's parameters. `distill` weighs the
    distillation loss through the frozen tail (0: feature loss only). `source`: the original video,
    whose frames then serve as the teacher instead of the INR's own. Only pairs whose GFLOPs per
    frame are at most `max_cost` x the pixel path's are ranked and trained (0: no cap; when no pair
    qualifies, all are); ``exhaustive`` trains every pair and chooses among those within the cap.
    The report's ``warnings`` list `quality_warnings`; with `strict`, any of them raises
    LowFidelityError and nothing is appended.
    """
    t0 = time.monotonic()
    kinds = tuple(dict.fromkeys(kinds))
    _check_args(top_k, epochs, search, kinds, distill, max_cost)
    dev = resolve_device(device)
    with open_nvp(path) as video:
        n_seg = len(video.segments)
        spec = resolve_task(task)
        task = spec.name
        emit(progress, "attach", 0, None, stage_name="targets")
        data = _prepare(video, spec, weights, sample_frames, dev, source, source_stream)
        rt = data.rt
        clip = isinstance(data, clip_attach.ClipData)
        if clip:
            distill = 0.0
        cands = clip_attach.score_clip_pairs(data, Candidate) if clip else score_pairs(data)
        cands.sort(key=(lambda c: (-c.cka, c.inr_layer, c.injection_point)) if search == "cka"
                   else (lambda c: (-c.lstsq, c.inr_layer, c.injection_point)))
        within, pixel_gflops = within_cost(data, cands, max_cost)
        pool = within or cands
        top = cands if search == "exhaustive" else pool[: top_count(len(pool), _top_k_value(top_k))]
        jobs = [(c, kind) for c in top for kind in (
            clip_attach.clip_kinds_within_budget(data, c.inr_layer, c.injection_point, kinds, max_adapter_pct)
            if clip else kinds_within_budget(data, c, kinds, max_adapter_pct))]
        emit(progress, "attach", 0, len(jobs), stage_name="adapters")
        for j, (c, kind) in enumerate(jobs):
            fit = _train(data, c, kind, epochs, distill, seed)["fit"]
            emit(progress, "attach", j + 1, len(jobs), val_loss=fit.val_loss[-1] if fit.val_loss else None)
        chosen, kind, best = choose([c for c in top if c in pool])
        k, p = chosen.key
        bits, best = (clip_attach.clip_storage_bits(data, k, p, best, ADAPTER_BITS, QUANT_TOLERANCE) if clip
                      else storage_bits(data, chosen, best))
        adapters = {0: best["adapter"]}
        for seg in range(1, n_seg):
            seg_data = _prepare(video, spec, weights, sample_frames, dev, source, source_stream, segment=seg, rt=rt)
            seg_cand = Candidate(k, p, chosen.cka, chosen.lstsq)
            adapters[seg] = _train(seg_data, seg_cand, kind, epochs, distill, seed)["adapter"]
        candidates = [_candidate_row(c) for c in cands]
        first = data.targets[p][0] if clip else data.targets[p]
        size = tuple(first.shape[-2:])
        in_ch, out_ch = int(data.inr[k].shape[1]), int(first.shape[1])
        pathways = _pathways(rt, p, data) if clip else None
        backbone_params = data.backbone_params

    variation = feature_variation(data.inr, time_channel=video.config().kind == "hinerv")
    warnings = quality_warnings(cands, best["fidelity"], FIDELITY_FLOOR, variation)
    if strict and warnings:
        raise LowFidelityError(f"{task} not attached (--strict): {'; '.join(warnings)}")
    adapter_params = int(best["adapter"].num_parameters())
    entry = {
        "inr_layer": k, "injection_point": p, "adapter_kind": kind, "adapter_bits": bits or 16,
        "hidden": best["adapter"].hidden,
        "cka": float(chosen.cka), "lstsq_fidelity": float(chosen.lstsq), "fidelity": best["fidelity"],
        "gflops": best["gflops"], "out_size": list(size), "in_channels": in_ch, "out_channels": out_ch,
        "adapter_params": adapter_params, "backbone_params": backbone_params,
        "adapter_params_pct": 100.0 * adapter_params / backbone_params,
        "adapter_sections": [adapter_section_name(task, s, n_seg) for s in range(n_seg)],
        "weights": rt.weights_label, "weights_random": rt.random, "sample_frames": data.frames,
        "teacher": "source" if source else "inr", "search": search, "distill": float(distill),
        "max_cost": float(max_cost), "pixel_path_gflops": pixel_gflops, "top_k": top_k, "epochs": epochs,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if pathways is not None:
        entry["pathways"] = pathways
        entry["clip"] = {"frames": rt.clip_len, "windows": [[w[0], w[-1] + 1] for w in data.windows]}
    sections = []
    for seg, ad in adapters.items():
        meta = {"task": task, "inr_layer": k, "injection_point": p, "out_size": list(size), "segment": seg,
                "kind": kind}
        if pathways is not None:
            meta["pathways"] = pathways
        sections.append(Section(adapter_section_name(task, seg, n_seg), SectionKind.ADAPTER, ad.pack(meta, bits)))

    def merged_routing(latest: NvpReader) -> list[Section]:
        routing = read_routing(latest)
        routing["tasks"][task] = entry
        return [Section("routing", SectionKind.ROUTING, pack_msgpack(routing))]

    before = os.path.getsize(path)
    append_nvp(path, sections, update=merged_routing)
    adapter_bytes = os.path.getsize(path) - before
    fit = best["fit"]
    return {
        "task": task, "file": str(path), "candidates": candidates, "search": search,
        "chosen": {"inr_layer": k, "injection_point": p, "adapter_kind": kind, "adapter_bits": bits or 16,
                   "cka": float(chosen.cka),
                   "lstsq_fidelity": float(chosen.lstsq)},
        "fidelity": best["fidelity"], "adapter_params": adapter_params, "adapter_params_pct": entry["adapter_params_pct"],
        "backbone_params": backbone_params, "gflops": best["gflops"], "pixel_path_gflops": pixel_gflops,
        "max_cost": float(max_cost), "pairs_within_cost": len(within), "trained_pairs": len(top),
        "trained_adapters": len(jobs), "total_pairs": len(cands), "adapter_epochs": fit.epochs_run,
        "adapter_val": fit.val_metrics, "sample_frames": len(data.frames), "segments": n_seg,
        "teacher": entry["teacher"], "weights": rt.weights_label, "weights_random": rt.random,
        "appended_bytes": adapter_bytes, "appended_pct": 100.0 * adapter_bytes / before,
        "fidelity_floor": FIDELITY_FLOOR, "warnings": warnings, "seconds": time.monotonic() - t0,
    }


def _pathways(rt: TaskRuntime, point: str, data: Any) -> list[dict[str, Any]]:
    """Routing description of a clip task's pathways at `point`: name, channels, size, clip positions."""
    m = rt.model
    return [{"name": n, "out_channels": int(t.shape[1]), "out_size": list(t.shape[-2:]), "positions": pos}
            for n, t, pos in zip(m.pathways, data.targets[point], m.pathway_positions(point))]


def _candidate_row(c: Candidate) -> dict[str, Any]:
    return {"inr_layer": c.inr_layer, "injection_point": c.injection_point, "cka": float(c.cka),
            "lstsq_fidelity": float(c.lstsq), "gflops_estimate": c.gflops, "trained": bool(c.trained),
            "fidelity": max((t["fidelity"] for t in c.trained.values()), default=None),
            "gflops": min((t["gflops"] for t in c.trained.values()), default=None),
            "kinds": {kd: {"fidelity": t["fidelity"], "gflops": t["gflops"], "params": t["adapter"].num_parameters()}
                      for kd, t in c.trained.items()}}


def _fit(rt: TaskRuntime, x: torch.Tensor, y: torch.Tensor, teacher: Any, point: str, kind: str,
         train: list[int], val: list[int], epochs: int, distill: float, seed: int, dev: torch.device):
    """One adapter: composite feature loss (+ distillation through the frozen tail when `distill` > 0)."""
    task = None
    if distill > 0:
        task = TaskDistill(tail=lambda a, **ctx: rt.model.forward_from(a, point, **ctx), teacher=teacher,
                           loss=rt.spec.distill_loss, weight=distill, score=rt.spec.fidelity,
                           context=rt.spec.distill_context)
    return fit_adapter(x, y, kind=kind, train_indices=train, val_indices=val, epochs=epochs,
                       lr=DISTILL_LR if task is not None else FEATURE_LR, task=task, seed=seed, device=dev)
