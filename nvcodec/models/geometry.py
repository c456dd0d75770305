"""Input geometry of a task: how a video frame (H, W) maps onto the backbone input.

A frame is resized as a whole to ``resize_hw`` (bilinear, antialiased) and then,
optionally, cropped to a pixel box of the resized image. The crop box is also available
in normalized frame coordinates (``crop_box``) so that feature maps covering the whole
frame (INR activations) can be cropped the same way before being resized to an
injection point's size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from nvcodec.errors import FormatError, UsageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Geometry:
    """Frame -> backbone input mapping.

    `frame_hw`: original frame size; `resize_hw`: size the whole frame is resized to;
    `crop`: optional ``(top, left, height, width)`` pixel box in the resized image.
    """

    frame_hw: tuple[int, int]
    resize_hw: tuple[int, int]
    crop: tuple[int, int, int, int] | None = None

    def __post_init__(self) -> None:
        for name in ("frame_hw", "resize_hw"):
            hw = getattr(self, name)
            if len(hw) != 2 or min(hw) < 1:
                raise UsageError(f"Geometry.{name} must be two positive ints, got {hw}")
        if self.crop is not None:
            top, left, h, w = self.crop
            rh, rw = self.resize_hw
            if h < 1 or w < 1 or top < 0 or left < 0 or top + h > rh or left + w > rw:
                raise UsageError(f"crop {self.crop} does not fit inside the resized frame {self.resize_hw}")

    @property
    def out_hw(self) -> tuple[int, int]:
        """Backbone input size (h, w)."""
        return (self.crop[2], self.crop[3]) if self.crop is not None else self.resize_hw

    @property
    def output_size(self) -> tuple[int, int]:
        """Alias of `out_hw`."""
        return self.out_hw

    @property
    def crop_box(self) -> tuple[float, float, float, float]:
        """Region of the frame the backbone sees: normalized ``(x0, y0, x1, y1)`` in [0, 1]."""
        if self.crop is None:
            return (0.0, 0.0, 1.0, 1.0)
        top, left, h, w = self.crop
        rh, rw = self.resize_hw
        return (left / rw, top / rh, (left + w) / rw, (top + h) / rh)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (msgpack/JSON friendly)."""
        return {
            "frame_hw": list(self.frame_hw),
            "resize_hw": list(self.resize_hw),
            "crop": list(self.crop) if self.crop is not None else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Geometry:
        """Inverse of `to_dict`; raises FormatError on malformed input."""
        try:
            crop = d.get("crop")
            return cls(
                frame_hw=(int(d["frame_hw"][0]), int(d["frame_hw"][1])),
                resize_hw=(int(d["resize_hw"][0]), int(d["resize_hw"][1])),
                crop=tuple(int(v) for v in crop) if crop is not None else None,  # type: ignore[arg-type]
            )
        except (KeyError, TypeError, ValueError, IndexError, UsageError) as exc:
            raise FormatError(f"bad geometry record {d!r}: {exc}") from None


def _check_hw(frame_hw: Sequence[int]) -> tuple[int, int]:
    if len(frame_hw) != 2 or int(frame_hw[0]) < 1 or int(frame_hw[1]) < 1:
        raise UsageError(f"frame size must be two positive ints (H, W), got {tuple(frame_hw)}")
    return int(frame_hw[0]), int(frame_hw[1])


def resize_shorter_side(frame_hw: Sequence[int], size: int) -> tuple[int, int]:
    """torchvision ``Resize(size)``: shorter side -> `size`, longer side truncated to keep the aspect ratio."""
    h, w = _check_hw(frame_hw)
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    return (new_long, new_short) if w <= h else (new_short, new_long)


def imagenet_geometry(frame_hw: Sequence[int], resize: int = 256, crop: int = 224) -> Geometry:
    """ImageNet evaluation: resize the shorter side to `resize`, then center crop `crop` x `crop`."""
    h, w = _check_hw(frame_hw)
    if crop > resize:
        raise UsageError(f"crop {crop} is larger than the resize {resize}")
    rh, rw = resize_shorter_side((h, w), resize)
    top = int(round((rh - crop) / 2.0))
    left = int(round((rw - crop) / 2.0))
    return Geometry((h, w), (rh, rw), (top, left, crop, crop))


def whole_frame_geometry(frame_hw: Sequence[int], size: int = 224) -> Geometry:
    """The whole frame resized to `size` x `size` (aspect ratio not kept, nothing cropped away)."""
    h, w = _check_hw(frame_hw)
    return Geometry((h, w), (int(size), int(size)), None)


def shortest_longest_size(frame_hw: Sequence[int], shortest: int, longest: int | None) -> tuple[int, int]:
    """Output size of DetrImageProcessor's ``{"shortest_edge", "longest_edge"}`` resize (same rounding)."""
    height, width = _check_hw(frame_hw)
    size = shortest
    raw_size = None
    if longest is not None:
        min_original = float(min(height, width))
        max_original = float(max(height, width))
        if max_original / min_original * size > longest:
            raw_size = longest * min_original / max_original
            size = int(round(raw_size))
    if (height <= width and height == size) or (width <= height and width == size):
        return height, width
    if width < height:
        ow = size
        oh = int(raw_size * height / width) if raw_size is not None else int(size * height / width)
    else:
        oh = size
        ow = int(raw_size * width / height) if raw_size is not None else int(size * width / height)
    return oh, ow


def detr_geometry(frame_hw: Sequence[int], shortest: int = 800, longest: int = 1333) -> Geometry:
    """DETR: resize the shorter side to `shortest` with the longer side at most `longest`; no crop."""
    h, w = _check_hw(frame_hw)
    return Geometry((h, w), shortest_longest_size((h, w), shortest, longest), None)


def frames_to_float(frames: Tensor | np.ndarray) -> Tensor:
    """uint8 (N,H,W,3) or float (N,3,H,W) in [0,1] -> float32 (N,3,H,W) in [0,1] (same device)."""
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if not isinstance(frames, Tensor):
        raise UsageError(f"frames must be a tensor or numpy array, got {type(frames).__name__}")
    if frames.dim() == 3:
        frames = frames.unsqueeze(0)
    if frames.dim() != 4:
        raise UsageError(f"frames must be (N,H,W,3) uint8 or (N,3,H,W) float, got shape {tuple(frames.shape)}")
    if frames.dtype == torch.uint8:
        if frames.shape[-1] != 3:
            raise UsageError(f"uint8 frames must be (N,H,W,3), got shape {tuple(frames.shape)}")
        return frames.permute(0, 3, 1, 2).float().div_(255.0)
    if not frames.is_floating_point() or frames.shape[1] != 3:
        raise UsageError(f"float frames must be (N,3,H,W), got {frames.dtype} {tuple(frames.shape)}")
    return frames.float()


def preprocess(
    frames: Tensor | np.ndarray,
    geometry: Geometry,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    *,
    device: torch.device | str | None = None,
) -> Tensor:
    """Frames -> normalized backbone input (N,3,h,w) float32: resize (bilinear, antialias), crop, normalize."""
    x = frames_to_float(frames)
    if device is not None:
        x = x.to(device)
    if tuple(x.shape[-2:]) != tuple(geometry.frame_hw):
        raise UsageError(f"frames are {tuple(x.shape[-2:])} but the geometry expects {geometry.frame_hw}")
    if tuple(geometry.resize_hw) != tuple(geometry.frame_hw):
        x = F.interpolate(x, size=geometry.resize_hw, mode="bilinear", align_corners=False, antialias=True)
    if geometry.crop is not None:
        top, left, h, w = geometry.crop
        x = x[:, :, top : top + h, left : left + w]
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return ((x - m) / s).contiguous()


def crop_features(feat: Tensor, geometry: Geometry) -> Tensor:
    """Crop a feature map (N,C,h,w) covering the whole frame to the geometry's crop box.

    Box edges are rounded to the nearest feature pixel (at least one pixel kept); the
    result is meant to be resized (bilinear) to the injection point's size afterwards.
    """
    if feat.dim() != 4:
        raise UsageError(f"features must be (N,C,h,w), got shape {tuple(feat.shape)}")
    if geometry.crop is None:
        return feat
    h, w = feat.shape[-2:]
    x0, y0, x1, y1 = geometry.crop_box
    c0, c1 = _round_span(x0 * w, x1 * w, w)
    r0, r1 = _round_span(y0 * h, y1 * h, h)
    return feat[:, :, r0:r1, c0:c1]


def _round_span(a: float, b: float, n: int) -> tuple[int, int]:
    lo = min(max(int(round(a)), 0), n - 1)
    hi = min(max(int(round(b)), lo + 1), n)
    return lo, hi


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """(cx, cy, w, h) -> (x0, y0, x1, y1), last dimension."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


def boxes_to_frame(
    boxes_xyxy: Tensor, geometry: Geometry, frame_hw: Sequence[int] | None = None, *, clip: bool = True
) -> Tensor:
    """Boxes normalized to the backbone input (x0,y0,x1,y1 in [0,1]) -> pixel coordinates of the frame.

    The input covers ``geometry.crop_box`` of the frame; `frame_hw` defaults to ``geometry.frame_hw``.
    With `clip`, coordinates are clipped to the frame.
    """
    fh, fw = _check_hw(frame_hw) if frame_hw is not None else geometry.frame_hw
    bx0, by0, bx1, by1 = geometry.crop_box
    scale = boxes_xyxy.new_tensor([(bx1 - bx0) * fw, (by1 - by0) * fh] * 2)
    offset = boxes_xyxy.new_tensor([bx0 * fw, by0 * fh] * 2)
    out = boxes_xyxy * scale + offset
    if clip:
        limit = boxes_xyxy.new_tensor([fw, fh, fw, fh])
        out = torch.minimum(out.clamp(min=0), limit)
    return out
