"""What attach and infer share: building a task's backbone, mapping INR features into its geometry."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import FormatError, UsageError
from ..codec.meta import read_adapter_meta
from ..codec.serialize import bundle_size_range
from .adapter import MicroAdapter, adapter_shapes, default_hidden
from .flops import count_flops
from .geometry import Geometry, crop_features, preprocess
from .registry import TaskSpec, get_task
from .weights import resolve_weights

RANDOM_TINY = "random-tiny"
RANDOM_SEED = 20260101


@dataclass
class TaskRuntime:
    """A built backbone for one task on one video geometry."""

    spec: TaskSpec
    model: Any
    geometry: Geometry
    weights_label: str
    random: bool
    tiny: bool

    def pixel_input(self, frames_uint8: torch.Tensor) -> torch.Tensor:
        """Preprocess decoded frames (N, H, W, 3) uint8 for the full backbone."""
        return preprocess(frames_uint8, self.geometry, self.spec.mean, self.spec.std)

    def point_size(self, point: str) -> tuple[int, int]:
        """Spatial size of the backbone activation at `point` for this geometry."""
        return tuple(self.model.point_size(point, self.geometry.output_size))  # type: ignore[return-value]


def build_runtime(task: str, weights: str | None, device: torch.device, width: int, height: int,
                  calibration_frames: torch.Tensor | None = None,
                  labels: Sequence[str] | None = None) -> TaskRuntime:
    """Resolve weights and build the task's backbone; random backbones are seeded (and BN-calibrated).

    `labels` replaces the label set of a zero-shot task (`TaskSpec.with_labels`).
    """
    spec = get_task(task)
    if labels is not None:
        spec = spec.with_labels(labels)
    tiny = weights == RANDOM_TINY
    source = resolve_weights(spec.name, "random" if tiny else weights)
    random = source.random
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        model = spec.build(source, device, tiny=tiny)
    model.eval()
    geometry = spec.geometry(height, width)
    rt = TaskRuntime(spec, model, geometry, RANDOM_TINY if tiny else source.label, random, tiny)
    if random and calibration_frames is not None:
        with torch.random.fork_rng(devices=[]):
            spec.calibrate(model, [rt.pixel_input(calibration_frames.to(device))])
        model.eval()
    return rt



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
        block_channels = video.config(seg).channels[layer]
        kind = entry.get("adapter_kind") or "linear"
        hidden = entry.get("hidden") or default_hidden(channels)
        shapes = adapter_shapes(kind, block_channels, channels, hidden)
        bundle = video.reader.read_tensors(name, bundle_size_range(shapes)[1])
        size, kind = read_adapter_meta(bundle.meta, name, entry, seg)
        if size != tuple(expected):
            raise FormatError(f"adapter out_size {list(size)} does not match the injection point's {list(expected)}",
                              section=name)
        try:
            adapter = MicroAdapter.from_arrays({n: bundle.dequantized(n) for n in bundle.tensors}, tuple(expected),
                                               kind=kind)
        except (KeyError, ValueError, RuntimeError, UsageError) as exc:
            raise FormatError(f"adapter tensors do not form a {kind} adapter: {exc}", section=name) from None
        if adapter.out_channels != channels:
            raise FormatError(f"adapter gives {adapter.out_channels} channels, {point} has {channels}", section=name)
        if adapter.in_channels != block_channels:
            raise FormatError(f"adapter takes {adapter.in_channels} channels, INR block {layer} gives "
                              f"{block_channels}", section=name)
        out[seg] = adapter.to(device).eval()
    return out


@torch.inference_mode()
def pixel_path_flops(video: Any, rt: TaskRuntime, device: torch.device) -> tuple[int, int]:
    """FLOPs per frame of the pixel path: (INR full decode, preprocessing + full backbone), on segment 0."""
    seg = video.segments[0]
    dec_full, _ = video.decoder(seg, None, device)
    _, f_full = count_flops(dec_full, video.inputs(seg, [seg.start], device, None))
    _, f_backbone = count_flops(rt.model, rt.pixel_input(video.frames([seg.start], device=device)))
    return f_full, f_backbone
