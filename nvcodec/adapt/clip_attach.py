"""`attach` for clip tasks: windows instead of frames, one adapter per backbone pathway.

The sample is a set of windows spread over the segment; the frames they need are decoded once.
Scoring and training work per pathway on time-step rows: pathway q's target at a point is
`to_slices` of its activation, its input the INR features of the frames those steps stand for.
Adapters are fitted on the composite feature loss (per pathway, so distillation through the
joint tail is not applied); every choice is made on the held-out windows' task fidelity through
the frozen tail, as for frame tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..codec.video import NvpVideo
from ..errors import UsageError
from ..route.adapter import adapter_parameters, fit_adapter
from ..route.clips import ClipAdapter, clip_rows, sample_windows, slice_indices, to_slices, union_frames
from ..models.registry import TaskSpec
from ..route.flops import count_flops
from .cka import rank_pairs
from .holdout import FEATURE_LR, split
from ..route.runtime import TaskRuntime, build_runtime


@dataclass
class ClipData:
    """Everything scoring and training need for one segment's window sample.

    `inr[k]`: block-k features of `union` frames (in geometry); `rows`: their row for each window
    frame (windows concatenated); `targets[p]`: the pathway activations (W, C, T', h, w);
    `teacher`: raw outputs per window; `train` / `val`: window indices.
    """

    video: NvpVideo
    rt: TaskRuntime
    windows: list[list[int]]
    union: list[int]
    rows: list[int]
    inr: dict[int, torch.Tensor]
    targets: dict[str, list[torch.Tensor]]
    teacher: Any
    train: list[int]
    val: list[int]
    device: torch.device

    @property
    def frames(self) -> list[int]:
        """The sampled windows' frames, concatenated (what BN calibration of a random backbone sees)."""
        return [i for w in self.windows for i in w]

    @property
    def backbone_params(self) -> int:
        return int(self.rt.model.num_parameters())

    def clip_features(self, layer: int, windows: list[int]) -> torch.Tensor:
        """Block-`layer` features of the given windows' frames: (len(windows) * clip_len, C, h, w)."""
        t = self.rt.clip_len
        return self.inr[layer][[self.rows[w * t + j] for w in windows for j in range(t)]]

    def pathway_pairs(self, layer: int, point: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per pathway: (INR rows of the frames its time steps stand for, its time-step target rows)."""
        t = self.rt.clip_len
        out = []
        for pos, target in zip(self.rt.model.pathway_positions(point), self.targets[point]):
            idx = [self.rows[w * t + j] for w in range(len(self.windows)) for j in pos]
            out.append((self.inr[layer][idx], to_slices(target)))
        return out


def calibration_frames(windows: list[list[int]]) -> list[int]:
    """The frames a random backbone's BN statistics are estimated on (the same in attach and infer)."""
    return [i for w in windows for i in w][:64]


def prepare_clip(video: NvpVideo, spec: TaskSpec, weights: str | None, sample_windows_count: int | None,
                 device: torch.device, features: Any, teacher_fn: Any, segment: int = 0,
                 rt: TaskRuntime | None = None) -> ClipData:
    """Sample windows of a segment, decode their frames once, and compute the teacher and INR features.

    `features(video, rt, layers, frames, segment, device)` and `teacher_fn(rt, frame_indices,
    decoded_uint8, points)` are attach's helpers (so pixel sources and feature extraction stay one
    implementation each); the teacher sees the windows' frames in clip order.
    """
    assert spec.clip is not None
    tiny = weights == "random-tiny"
    count = sample_windows_count or spec.clip.sample_windows
    if count < 2:
        raise UsageError("--frames (the attach sample, in windows for clip tasks) must be at least 2")
    seg = video.segments[segment]
    windows = sample_windows(seg.start, seg.stop, spec.clip.clip_len(tiny), spec.clip.span(tiny), count)
    union = union_frames(windows)
    decoded = video.frames(union, device=device)
    rows = clip_rows(windows, union)
    if rt is None:
        m = video.metadata
        calib = video.frames(calibration_frames(windows), device=device)
        rt = build_runtime(spec, weights, device, m.width, m.height, calibration_frames=calib)
    window_frames = [i for w in windows for i in w]
    targets, teacher = teacher_fn(rt, window_frames, decoded[rows], spec.injection_points)
    inr = features(video, rt, range(video.num_layers), union, segment, device)
    if len(windows) == 1:
        # One window fits the segment: fit and validate on it.
        windows, rows = windows * 2, rows * 2
        targets = {p: [a.repeat(2, 1, 1, 1, 1) for a in acts] for p, acts in targets.items()}
        teacher = teacher.repeat(2, 1)
    train, val = split(len(windows))
    return ClipData(video, rt, windows, union, rows, inr, targets, teacher, train, val, device)


def clip_fidelity(data: ClipData, adapter: ClipAdapter, layer: int, point: str, windows: list[int]) -> float:
    """Task fidelity of `adapter`'s path on `windows` against the teacher."""
    with torch.no_grad():
        out = data.rt.model.forward_from(adapter(data.clip_features(layer, windows)), point)
    return float(data.rt.spec.fidelity(out, data.teacher[windows]))


def _adapter(data: ClipData, fits: list[Any], point: str) -> ClipAdapter:
    m = data.rt.model
    return ClipAdapter([f.adapter for f in fits], m.pathway_positions(point), data.rt.clip_len, m.pathways)


@torch.inference_mode()
def clip_cost_gflops(data: ClipData, layer: int, point: str, adapter: ClipAdapter) -> float:
    """GFLOPs per window: partial decode of its frames to `layer` + adapter + backbone tail from `point`."""
    seg = data.video.segments[0]
    t = data.rt.clip_len
    dec, _ = data.video.decoder(seg, layer, data.device)
    _, f_dec = count_flops(dec.features, data.video.inputs(seg, [seg.start] * t, data.device, layer), layer)
    act, f_ad = count_flops(adapter, data.clip_features(layer, [0]))
    _, f_tail = count_flops(data.rt.model.forward_from, act, point)
    return (f_dec + f_ad + f_tail) / 1e9


def score_clip_pairs(data: ClipData, candidate: Any) -> list[Any]:
    """Every (block, point) pair: mean CKA over pathways, held-out fidelity of the least-squares
    adapters, and GFLOPs per window. `candidate` builds attach's Candidate rows."""
    out = []
    debiased = len(data.windows) >= 4
    for p in data.rt.spec.injection_points:
        for k in data.inr:
            pairs = data.pathway_pairs(k, p)
            ckas = [rank_pairs({k: x}, {p: y}, debiased=debiased)[0].cka for x, y in pairs]
            fits = [_fit(data, x, y, p, q, "linear", 0, 0) for q, (x, y) in enumerate(pairs)]
            ad = _adapter(data, fits, p)
            out.append(candidate(k, p, sum(ckas) / len(ckas), clip_fidelity(data, ad, k, p, data.val),
                                 clip_cost_gflops(data, k, p, ad)))
    out.sort(key=lambda c: (-c.cka, c.inr_layer, c.injection_point))
    return out


def _fit(data: ClipData, x: torch.Tensor, y: torch.Tensor, point: str, q: int, kind: str, epochs: int,
         seed: int) -> Any:
    steps = len(data.rt.model.pathway_positions(point)[q])
    return fit_adapter(x, y, kind=kind, train_indices=slice_indices(data.train, steps),
                       val_indices=slice_indices(data.val, steps), epochs=epochs, lr=FEATURE_LR, seed=seed,
                       device=data.device)


def clip_kinds_within_budget(data: ClipData, layer: int, point: str, kinds: tuple[str, ...],
                             max_adapter_pct: float) -> list[str]:
    """Kinds whose adapters for all pathways together fit the parameter budget (``linear`` always does)."""
    ci = int(data.inr[layer].shape[1])
    outs = data.rt.model.pathway_channels(point)
    return [k for k in kinds if k == "linear" or
            100.0 * sum(adapter_parameters(k, ci, co) for co in outs) / data.backbone_params <= max_adapter_pct]


def clip_storage_bits(data: ClipData, layer: int, point: str, best: dict[str, Any], bits: int,
                      tolerance: float) -> tuple[int | None, dict[str, Any]]:
    """(`bits`, the result with the quantized adapter's held-out fidelity) when storing every pathway
    adapter's weights at `bits` costs at most `tolerance` of fidelity, else (None, `best`: float16)."""
    fidelity = clip_fidelity(data, best["adapter"].stored(bits), layer, point, data.val)
    if fidelity < best["fidelity"] - tolerance:
        return None, best
    return bits, {**best, "bits": bits, "fidelity": fidelity}


def train_clip_candidate(data: ClipData, layer: int, point: str, kind: str, epochs: int, seed: int) -> dict[str, Any]:
    """Fit one adapter of `kind` per pathway; the result as `attach.train_candidate` records it."""
    fits = [_fit(data, x, y, point, q, kind, epochs, seed) for q, (x, y) in enumerate(data.pathway_pairs(layer, point))]
    adapter = _adapter(data, fits, point).stored().eval()
    return {"adapter": adapter, "fit": fits[0], "pathway_fits": fits,
            "fidelity": clip_fidelity(data, adapter, layer, point, data.val),
            "gflops": clip_cost_gflops(data, layer, point, adapter)}
