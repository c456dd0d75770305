"""Typed views of the small msgpack sections: `video`, `segments`, `model`, `routing`, `provenance`.

Every section is read with a size cap derived from what it can legitimately hold (a fixed
allowance, plus a few hundred bytes per segment or section where it lists those), so a small
hostile file cannot make a reader decode megabytes of metadata.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ..container import NvpReader, SectionKind
from ..errors import FormatError
from ..inr.plan import INRConfig

MAX_DIM = 16384
MAX_FRAMES = 10_000_000
MAX_SEGMENTS = 65536

VIDEO_MAX_BYTES = 64 * 1024
MODEL_MAX_BYTES = 64 * 1024
SEGMENT_ENTRY_BYTES = 320
ROUTING_BASE_BYTES = 256 * 1024
ROUTING_PER_SECTION_BYTES = 256
PROVENANCE_BASE_BYTES = 256 * 1024
PROVENANCE_PER_SEGMENT_BYTES = 1024
# A model never needs more parameters than this many per RGB value of its frames (or MIN_MODEL_PARAMS).
PARAMS_PER_VALUE = 4
MIN_MODEL_PARAMS = 1 << 22


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _models(reader: NvpReader) -> int:
    return sum(1 for s in reader.sections if s.kind == SectionKind.MODEL)


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
        if src is not None and not (len(src) == 2 and all(_is_int(x) and x >= 0 for x in src)):
            raise FormatError("source_frames must be [start, stop]", section=sec)
        opt = {k: _get(d, k, str, sec, optional=True) for k in
               ("source_codec", "pix_fmt", "color_space", "color_range", "color_primaries", "color_trc", "source_name")}
        return cls(width, height, frames, fps_num / fps_den, fps_num, fps_den,
                   source_frames=tuple(src) if src is not None else None, **opt)


def read_video(reader: NvpReader) -> VideoMetadata:
    """The validated `video` section (at most VIDEO_MAX_BYTES)."""
    return VideoMetadata.from_dict(reader.read_msgpack("video", VIDEO_MAX_BYTES))


def read_segments(reader: NvpReader, frames: int) -> list[tuple[int, int, str]]:
    """(start, stop, prefix) for each INR in the file; one unnamed segment when there is no table.

    Prefixes are distinct and each names a `{prefix}model` section of the index.
    """
    if "segments" not in reader:
        return [(0, frames, "")]
    models = _models(reader)
    table = reader.read_msgpack("segments", 4096 + SEGMENT_ENTRY_BYTES * models)
    items = _get(table, "segments", list, "segments")
    if not 0 < len(items) <= min(MAX_SEGMENTS, models, frames):
        raise FormatError(f"segment count {len(items)} out of range: the video has {frames} frames and the "
                          f"file {models} model sections", section="segments")
    out = []
    prefixes: set[str] = set()
    expected = 0
    for item in items:
        start = _get(item, "start", int, "segments")
        stop = _get(item, "stop", int, "segments")
        prefix = _get(item, "prefix", str, "segments")
        if start != expected or stop <= start:
            raise FormatError("segments must tile the video in order without gaps", section="segments")
        if prefix in prefixes:
            raise FormatError(f"segment prefix {prefix!r} is used twice", section="segments")
        if f"{prefix}model" not in reader:
            raise FormatError(f"segment prefix {prefix!r} has no model section", section="segments")
        prefixes.add(prefix)
        expected = stop
        out.append((start, stop, prefix))
    if expected != frames:
        raise FormatError(f"segments cover {expected} frames but the video has {frames}", section="segments")
    return out


def max_model_params(width: int, height: int, frames: int) -> int:
    """The most parameters (decoder + embeddings) a model of `frames` frames of this size may have."""
    return max(MIN_MODEL_PARAMS, PARAMS_PER_VALUE * 3 * width * height * frames)


def read_model(reader: NvpReader, prefix: str, video: VideoMetadata, frames: int) -> INRConfig:
    """The INRConfig of one segment, checked against the video it decodes.

    Its frame size must be the video's, its frame count the segment's, and its size within
    `max_model_params`, all before anything is allocated from it.
    """
    name = f"{prefix}model"
    try:
        config = INRConfig.from_dict(reader.read_msgpack(name, MODEL_MAX_BYTES))
    except FormatError as e:
        if e.section is not None:
            raise
        raise FormatError(str(e), section=name) from None
    if (config.width, config.height) != (video.width, video.height):
        raise FormatError(f"model decodes {config.width}x{config.height} frames, the video section says "
                          f"{video.width}x{video.height}", section=name)
    if config.num_frames != frames:
        raise FormatError(f"model holds {config.num_frames} frames, its segment {frames}", section=name)
    limit = max_model_params(video.width, video.height, frames)
    if config.num_params(frames) > limit:
        raise FormatError(f"model of {config.num_params(frames)} parameters is larger than a "
                          f"{video.width}x{video.height}x{frames} video needs (at most {limit})", section=name)
    return config


def read_routing(reader: NvpReader) -> dict:
    """The `routing` section ({'version': 1, 'tasks': {name: entry}}); empty when absent.

    The result is a fresh copy (maps of the top level, of `tasks` and of each entry), safe to modify.
    """
    if "routing" not in reader:
        return {"version": 1, "tasks": {}}
    routing = reader.read_msgpack("routing", ROUTING_BASE_BYTES + ROUTING_PER_SECTION_BYTES * len(reader.sections))
    if not isinstance(routing, dict):
        raise FormatError("routing must be a map", section="routing")
    tasks = routing.get("tasks", {})
    if not isinstance(tasks, dict) or not all(isinstance(k, str) and isinstance(v, dict) for k, v in tasks.items()):
        raise FormatError("routing 'tasks' must map task names to entries", section="routing")
    for name, entry in tasks.items():
        layer = entry.get("inr_layer")
        if layer is not None and not (_is_int(layer) and layer >= 0):
            raise FormatError(f"routing for {name!r}: inr_layer must be a block number, not {layer!r}"[:200],
                              section="routing")
        point = entry.get("injection_point")
        if point is not None and not isinstance(point, str):
            raise FormatError(f"routing for {name!r}: injection_point must be a string", section="routing")
        sample = entry.get("sample_frames")
        if sample is not None:
            frames = read_video(reader).frames if "video" in reader else 0
            if not isinstance(sample, list) or not all(_is_int(i) and 0 <= i < frames for i in sample):
                raise FormatError(f"routing for {name!r}: sample_frames must list frames of the video",
                                  section="routing")
    return {**routing, "tasks": {name: dict(entry) for name, entry in tasks.items()}}


def read_provenance(reader: NvpReader) -> dict:
    """The `provenance` section as a fresh map (empty when absent); non-finite or non-numeric quality
    figures become None."""
    if "provenance" not in reader:
        return {}
    prov = reader.read_msgpack("provenance", PROVENANCE_BASE_BYTES + PROVENANCE_PER_SEGMENT_BYTES * _models(reader))
    if not isinstance(prov, dict):
        raise FormatError("provenance must be a map", section="provenance")
    prov = dict(prov)
    for key in ("psnr", "psnr_min", "ssim", "encode_seconds"):
        if key in prov and not finite_number(prov[key]):
            prov[key] = None
    return prov


def recorded_stream(reader: NvpReader) -> int | None:
    """The source's video stream number recorded at encode (`--stream`), None when not recorded."""
    settings = read_provenance(reader).get("settings")
    stream = settings.get("stream") if isinstance(settings, dict) else None
    return stream if isinstance(stream, int) and not isinstance(stream, bool) and 0 <= stream < 1 << 16 else None


def finite_number(value: Any) -> bool:
    """Whether `value` is an int or a finite float (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value)
