"""Typed views of the small msgpack sections: `video`, `segments`, `provenance`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..container import NvpReader
from ..errors import FormatError

MAX_DIM = 16384
MAX_FRAMES = 10_000_000
MAX_SEGMENTS = 65536


def _get(d: Any, key: str, types: type | tuple, section: str, *, optional: bool = False) -> Any:
    if not isinstance(d, dict):
        raise FormatError("expected a map", section=section)
    if key not in d or d[key] is None:
        if optional:
            return None
        raise FormatError(f"missing key {key!r}", section=section)
    value = d[key]
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise FormatError(f"key {key!r} has the wrong type", section=section)
    if not isinstance(value, types):
        raise FormatError(f"key {key!r} has the wrong type", section=section)
    if isinstance(value, str) and len(value) > 256:
        raise FormatError(f"key {key!r} is too long", section=section)
    return value


@dataclass(frozen=True)
class VideoMetadata:
    """What the `video` section says about the source."""

    width: int
    height: int
    frames: int
    fps: float
    fps_num: int
    fps_den: int
    source_codec: str | None = None
    pix_fmt: str | None = None
    color_space: str | None = None
    color_range: str | None = None
    color_primaries: str | None = None
    color_trc: str | None = None
    source_name: str | None = None
    source_frames: tuple[int, int] | None = None

    def to_dict(self) -> dict:
        """Plain msgpack-friendly dict."""
        d = asdict(self)
        if self.source_frames is not None:
            d["source_frames"] = list(self.source_frames)
        return d

    @classmethod
    def from_dict(cls, d: Any) -> "VideoMetadata":
        """Validate and build from the decoded `video` section."""
        sec = "video"
        width = _get(d, "width", int, sec)
        height = _get(d, "height", int, sec)
        frames = _get(d, "frames", int, sec)
        if not (0 < width <= MAX_DIM and 0 < height <= MAX_DIM):
            raise FormatError(f"implausible frame size {width}x{height}", section=sec)
        if not 0 < frames <= MAX_FRAMES:
            raise FormatError(f"implausible frame count {frames}", section=sec)
        fps_num = _get(d, "fps_num", int, sec)
        fps_den = _get(d, "fps_den", int, sec)
        if not (0 < fps_num <= 1_000_000 and 0 < fps_den <= 1_000_000):
            raise FormatError("implausible frame rate", section=sec)
        src = _get(d, "source_frames", list, sec, optional=True)
        if src is not None and not (len(src) == 2 and all(isinstance(x, int) and x >= 0 for x in src)):
            raise FormatError("source_frames must be [start, stop]", section=sec)
        opt = {k: _get(d, k, str, sec, optional=True) for k in
               ("source_codec", "pix_fmt", "color_space", "color_range", "color_primaries", "color_trc", "source_name")}
        return cls(width, height, frames, fps_num / fps_den, fps_num, fps_den,
                   source_frames=tuple(src) if src is not None else None, **opt)


def read_segments(reader: NvpReader, frames: int) -> list[tuple[int, int, str]]:
    """(start, stop, prefix) for each INR in the file; one unnamed segment when there is no table."""
    if "segments" not in reader:
        return [(0, frames, "")]
    table = reader.read_msgpack("segments")
    items = _get(table, "segments", list, "segments")
    if not 0 < len(items) <= MAX_SEGMENTS:
        raise FormatError("segment count out of range", section="segments")
    out = []
    expected = 0
    for item in items:
        start = _get(item, "start", int, "segments")
        stop = _get(item, "stop", int, "segments")
        prefix = _get(item, "prefix", str, "segments")
        if start != expected or stop <= start:
            raise FormatError("segments must tile the video in order without gaps", section="segments")
        expected = stop
        out.append((start, stop, prefix))
    if expected != frames:
        raise FormatError(f"segments cover {expected} frames but the video has {frames}", section="segments")
    return out


def read_routing(reader: NvpReader) -> dict:
    """The `routing` section ({'version': 1, 'tasks': {name: entry}}); empty when absent."""
    if "routing" not in reader:
        return {"version": 1, "tasks": {}}
    routing = reader.read_msgpack("routing")
    if not isinstance(routing, dict):
        raise FormatError("routing must be a map", section="routing")
    tasks = routing.setdefault("tasks", {})
    if not isinstance(tasks, dict) or not all(isinstance(k, str) and isinstance(v, dict) for k, v in tasks.items()):
        raise FormatError("routing 'tasks' must map task names to entries", section="routing")
    return routing


def read_provenance(reader: NvpReader) -> dict:
    """The `provenance` section as a map (empty when absent); non-numeric quality figures become None."""
    if "provenance" not in reader:
        return {}
    prov = reader.read_msgpack("provenance")
    if not isinstance(prov, dict):
        raise FormatError("provenance must be a map", section="provenance")
    for key in ("psnr", "psnr_min", "ssim", "encode_seconds"):
        if key in prov and (isinstance(prov[key], bool) or not isinstance(prov[key], (int, float))):
            prov[key] = None
    return prov
