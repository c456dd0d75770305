"""What attach and infer share: building a task's backbone, mapping INR features into its geometry."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import UsageError
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
                  calibration_frames: torch.Tensor | None = None) -> TaskRuntime:
    """Resolve weights and build the task's backbone; random backbones are seeded (and BN-calibrated)."""
    spec = get_task(task)
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
