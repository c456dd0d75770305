"""What attach and infer share: building a task's backbone, mapping INR features into its geometry."""

from __future__ import annotations

import hashlib
import math
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import FormatError, UsageError
from ..codec.meta import read_adapter_meta
from ..codec.serialize import bundle_size_range
from .adapter import MicroAdapter, adapter_shapes, default_hidden
from .clips import ClipAdapter
from .flops import count_flops
from ..models.geometry import Geometry, crop_features, preprocess
from ..models.registry import TaskSpec, resolve_task

RANDOM_TINY = "random-tiny"
RANDOM_SEED = 20260101
BACKBONE_CACHE_SIZE = 4
"""Built backbones `build_runtime(..., reuse=True)` keeps per process (least recently used dropped)."""

_built: OrderedDict[tuple, Any] = OrderedDict()


def clear_backbone_cache() -> None:
    """Forget the backbones kept for reuse (frees their memory)."""
    _built.clear()


def _source_key(source: Any) -> tuple:
    """What identifies located weights: kind, label and, for files, size and modification time."""
    stamp: tuple = ()
    if source.path is not None:
        try:
            st = os.stat(source.path)
            stamp = (st.st_size, st.st_mtime_ns)
        except OSError:
            stamp = ("missing",)
    return (source.kind, source.label, str(source.path), stamp)


def _frames_key(frames: torch.Tensor | None) -> str | None:
    if frames is None:
        return None
    data = frames.detach().to("cpu").contiguous()
    digest = hashlib.blake2b(str((tuple(data.shape), str(data.dtype))).encode(), digest_size=16)
    digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclass
class TaskRuntime:
    """A built backbone for one task on one video geometry."""

    spec: TaskSpec
    model: Any
    geometry: Geometry
    weights_label: str
    random: bool
    tiny: bool

    @property
    def clip_len(self) -> int:
        """Frames per unit of work: the clip length of a clip task, 1 for a per-frame task."""
        return self.spec.clip.clip_len(self.tiny) if self.spec.clip is not None else 1

    def pixel_input(self, frames_uint8: torch.Tensor) -> torch.Tensor:
        """Preprocess decoded frames (N, H, W, 3) uint8 for the full backbone.

        Clip tasks take whole clips, N = B x clip_len frames in clip order: (B, 3, T, h, w).
        """
        x = preprocess(frames_uint8, self.geometry, self.spec.mean, self.spec.std)
        if self.spec.clip is None:
            return x
        t = self.clip_len
        if x.shape[0] % t:
            raise UsageError(f"{self.spec.name} takes clips of {t} frames, got {x.shape[0]} frames")
        return x.reshape(x.shape[0] // t, t, *x.shape[1:]).transpose(1, 2)

    def point_size(self, point: str) -> tuple[int, int]:
        """Spatial size of the backbone activation at `point` for this geometry."""
        return tuple(self.model.point_size(point, self.geometry.output_size))  # type: ignore[return-value]


def build_runtime(task: str | TaskSpec, weights: str | None, device: torch.device, width: int, height: int,
                  calibration_frames: torch.Tensor | None = None,
                  labels: Sequence[str] | None = None, reuse: bool = False) -> TaskRuntime:
    """Resolve weights and build the task's backbone; random backbones are seeded (and BN-calibrated).

    `task`: its `TaskSpec` (what attach, tune and infer pass), or a name, looked up here.

    `labels` replaces the label set of a zero-shot task (`TaskSpec.with_labels`). `reuse` (for
    callers that only run the backbone, never train it) takes a backbone built earlier in this
    process from the same weights file, device, labels and calibration frames, and keeps this one
    for later (BACKBONE_CACHE_SIZE; `clear_backbone_cache`).
    """
    spec = resolve_task(task)
    if labels is not None:
        spec = spec.with_labels(labels)
    tiny = weights == RANDOM_TINY
    source = spec.resolve_weights("random" if tiny else weights)
    random = source.random
    key = None
    if reuse:
        key = (spec.name, tiny, _source_key(source), str(device), tuple(labels) if labels is not None else None,
               _frames_key(calibration_frames) if random else None)
        model = _built.get(key)
        if model is not None:
            _built.move_to_end(key)
            return TaskRuntime(spec, model, spec.geometry(height, width), RANDOM_TINY if tiny else source.label,
                               random, tiny)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        model = spec.build(source, device, tiny=tiny)
    model.eval()
    geometry = spec.geometry(height, width)
    rt = TaskRuntime(spec, model, geometry, RANDOM_TINY if tiny else source.label, random, tiny)
    if random and calibration_frames is not None:
        with torch.random.fork_rng(devices=[]):
            spec.calibrate(model, [rt.pixel_input(whole_clips(calibration_frames.to(device), rt.clip_len))])
        model.eval()
    if key is not None:
        _built[key] = model
        while len(_built) > BACKBONE_CACHE_SIZE:
            _built.popitem(last=False)
    return rt



def whole_clips(frames: torch.Tensor, clip_len: int) -> torch.Tensor:
    """`frames` cut (or, when fewer, cycled) to a whole number of clips of `clip_len` frames."""
    if clip_len <= 1:
        return frames
    n = max(clip_len, frames.shape[0] - frames.shape[0] % clip_len)
    return frames[[i % frames.shape[0] for i in range(n)]]


def valid_region(feat: torch.Tensor, width: int, height: int, pad_width: int, pad_height: int) -> torch.Tensor:
    """Drop the cells of a block activation that only cover the padding (bottom/right)."""
    h, w = feat.shape[-2:]
    vh = max(1, min(h, math.ceil(h * height / pad_height)))
    vw = max(1, min(w, math.ceil(w * width / pad_width)))
    return feat[..., :vh, :vw]


def inr_to_geometry(feat: torch.Tensor, geometry: Geometry, width: int, height: int, pad_width: int,
                    pad_height: int) -> torch.Tensor:
    """Block activation -> the same crop of the frame that the backbone's pixel input sees."""
    return crop_features(valid_region(feat, width, height, pad_width, pad_height), geometry)


def sample_indices(total: int, count: int) -> list[int]:
    """`count` frame indices spread evenly over [0, total)."""
    if count <= 0:
        raise UsageError("the frame sample must hold at least one frame")
    if count >= total:
        return list(range(total))
    return sorted({round(i * (total - 1) / (count - 1)) if count > 1 else 0 for i in range(count)})


def adapter_section_name(task: str, segment: int, segments: int) -> str:
    """`adapter/{task}`, or `adapter/{task}/seg{i}` in a file of several segments."""
    return f"adapter/{task}" if segments == 1 else f"adapter/{task}/seg{segment}"


def load_adapters(video: Any, entry: dict, rt: TaskRuntime, device: torch.device) -> dict[int, MicroAdapter]:
    """The adapters a validated routing entry (`read_routing`) names, one per segment, checked against the backbone.

    The kind comes from each adapter section's metadata (files without one hold ``linear``
    adapters); `out_size` must equal the injection point's size for this video and the channels
    the INR block's and the backbone's, and each section's raw length must fit the tensors such an
    adapter holds, all before the section is decoded: a file cannot make the adapter allocate more
    than the backbone itself would.
    """
    point, layer = entry["injection_point"], entry["inr_layer"]
    if point not in rt.spec.injection_points:
        raise FormatError(f"routing names injection point {point!r}, which {rt.spec.name} does not have", section="routing")
    expected = rt.point_size(point)
    channels = rt.model.point_channels(point)
    if entry.get("out_channels") not in (None, channels):
        raise FormatError(f"routing says the adapter gives {entry['out_channels']} channels, {point} has {channels}",
                          section="routing")
    out = {}
    for seg, name in enumerate(entry["adapter_sections"]):
        block_channels = video.config(seg).block_out_channels(layer)
        kind = entry.get("adapter_kind") or "linear"
        hidden = entry.get("hidden") or default_hidden(channels)
        if rt.spec.clip is not None:  # one adapter per pathway, tensors named {pathway}/{tensor}
            shapes = {f"{q}/{k}": v for q, co in zip(rt.model.pathways, rt.model.pathway_channels(point))
                      for k, v in adapter_shapes(kind, block_channels, co, entry.get("hidden") or default_hidden(co)).items()}
        else:
            shapes = adapter_shapes(kind, block_channels, channels, hidden)
        bundle = video.reader.read_tensors(name, bundle_size_range(shapes)[1])
        size, kind = read_adapter_meta(bundle.meta, name, entry, seg)
        if size != tuple(expected):
            raise FormatError(f"adapter out_size {list(size)} does not match the injection point's {list(expected)}",
                              section=name)
        try:
            tensors = {n: bundle.dequantized(n) for n in bundle.tensors}
            if rt.spec.clip is not None:
                adapter = _clip_adapter(tensors, bundle.meta if isinstance(bundle.meta, dict) else {}, rt, point,
                                        tuple(expected), kind)
            else:
                adapter = MicroAdapter.from_arrays(tensors, tuple(expected), kind=kind)
        except (KeyError, ValueError, RuntimeError, UsageError) as exc:
            raise FormatError(f"adapter tensors do not form a {kind} adapter: {exc}", section=name) from None
        if rt.spec.clip is None and adapter.out_channels != channels:
            raise FormatError(f"adapter gives {adapter.out_channels} channels, {point} has {channels}", section=name)
        if adapter.in_channels != block_channels:
            raise FormatError(f"adapter takes {adapter.in_channels} channels, INR block {layer} gives "
                              f"{block_channels}", section=name)
        out[seg] = adapter.to(device).eval()
    return out


def _clip_adapter(tensors: dict, meta: dict, rt: TaskRuntime, point: str, size: tuple[int, int],
                  kind: str) -> ClipAdapter:
    """A clip task's adapter: one per backbone pathway, each checked against that pathway's channels.

    Pathway names come from the backbone (the file's list must equal them); clip positions are
    the backbone's own, never read from the file.
    """
    names = list(rt.model.pathways)
    listed = meta.get("pathways")
    if not isinstance(listed, list) or [d.get("name") if isinstance(d, dict) else None for d in listed] != names:
        raise UsageError(f"adapter pathways must be {names}")
    adapter = ClipAdapter.from_arrays(tensors, names, [size] * len(names), rt.model.pathway_positions(point),
                                      rt.clip_len, kind)
    got = [a.out_channels for a in adapter.pathway_adapters]
    if got != rt.model.pathway_channels(point):
        raise UsageError(f"adapter gives {got} channels per pathway, {point} has {rt.model.pathway_channels(point)}")
    if len({a.in_channels for a in adapter.pathway_adapters}) != 1:
        raise UsageError("pathway adapters take different channel counts")
    return adapter


@torch.inference_mode()
def pixel_path_flops(video: Any, rt: TaskRuntime, device: torch.device) -> tuple[int, int]:
    """FLOPs per frame (per clip for clip tasks) of the pixel path: (INR full decode, preprocessing +
    full backbone), on segment 0."""
    seg = video.segments[0]
    idx = [seg.start] * rt.clip_len
    dec_full, _ = video.decoder(seg, None, device)
    _, f_full = count_flops(dec_full, video.inputs(seg, idx, device, None))
    _, f_backbone = count_flops(rt.model, rt.pixel_input(video.frames(idx, device=device)))
    return f_full, f_backbone
