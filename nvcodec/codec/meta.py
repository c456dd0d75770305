"""Typed views of the small msgpack sections: `video`, `segments`, `model`, `routing`, `provenance`.

This is the one validation layer for metadata: each `read_*` checks its section against the schema
declared in `schema.py` (types, ranges, lengths, enums) and then the cross-field rules below
(segments tile the video and name models, a model decodes the video's frame size within bounded
work, routing names existing blocks, adapter sections and frames, adapter meta agrees with its
routing entry). Everything is checked before anything is allocated from it; errors are
FormatError naming the section and field.

Every section is read with a size cap derived from what it can legitimately hold (a fixed
allowance, plus a few hundred bytes per segment or section where it lists those), so a small
hostile file cannot make a reader decode megabytes of metadata.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ..container import NvpReader, SectionKind
from ..container.layout import FINE_GRID_FEATURE, MID_GRID_FEATURE
from ..errors import FormatError
from ..inr.plan import INRConfig
from . import schema
from .schema import MAX_SEGMENTS, check, fail

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
# Decode work per frame: no decoder activation holds more than DECODE_CHANNELS_PER_PIXEL values per
# padded pixel (or MIN_DECODE_VALUES), so decoding a frame costs a bounded multiple of its pixels.
DECODE_CHANNELS_PER_PIXEL = 256
MIN_DECODE_VALUES = 1 << 22
QUALITY_KEYS = ("psnr", "psnr_frame_mean", "psnr_min", "ssim", "encode_seconds")


def _models(reader: NvpReader) -> int:
    return sum(1 for s in reader.sections if s.kind == SectionKind.MODEL)


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
    source_bit_rate: int | None = None

    def to_dict(self) -> dict:
        """Plain msgpack-friendly dict."""
        d = asdict(self)
        if self.source_frames is not None:
            d["source_frames"] = list(self.source_frames)
        return d

    @classmethod
    def from_dict(cls, d: Any) -> "VideoMetadata":
        """Validate (schema.VIDEO; source_frames spans `frames`) and build from the decoded `video` section."""
        v = check(d, schema.VIDEO, "video")
        src = v.get("source_frames")
        if src is not None and src[1] - src[0] != v["frames"]:
            raise fail("video", "source_frames", f"{src} does not span the video's {v['frames']} frames")
        opt = {k: v.get(k) for k in ("source_codec", "pix_fmt", "color_space", "color_range", "color_primaries",
                                     "color_trc", "source_name")}
        return cls(v["width"], v["height"], v["frames"], v["fps_num"] / v["fps_den"], v["fps_num"], v["fps_den"],
                   source_frames=tuple(src) if src is not None else None,
                   source_bit_rate=v.get("source_bit_rate"), **opt)


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
    table = check(reader.read_msgpack("segments", 4096 + SEGMENT_ENTRY_BYTES * models), schema.SEGMENTS, "segments")
    items = table["segments"]
    if not 0 < len(items) <= min(MAX_SEGMENTS, models, frames):
        raise FormatError(f"segment count {len(items)} out of range: the video has {frames} frames and the "
                          f"file {models} model sections", section="segments")
    out = []
    prefixes: set[str] = set()
    expected = 0
    for item in items:
        start, stop, prefix = item["start"], item["stop"], item["prefix"]
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


def decode_values(config: INRConfig) -> int:
    """Values of the largest activation decoding one frame takes (any block's input, conv output or head)."""
    h, w = config.embed_height, config.embed_width
    largest = 0
    for k, s in enumerate(config.strides):
        largest = max(largest, config.block_in_channels(k) * h * w)
        h, w = h * s, w * s
        largest = max(largest, config.block_out_channels(k) * h * w)
    return max(largest, 3 * h * w)


def max_decode_values(config: INRConfig) -> int:
    """The decode-work cap per frame: DECODE_CHANNELS_PER_PIXEL x the padded pixels (or MIN_DECODE_VALUES)."""
    return max(MIN_DECODE_VALUES, DECODE_CHANNELS_PER_PIXEL * config.pad_width * config.pad_height)


def model_config(reader: NvpReader, prefix: str = "") -> INRConfig:
    """The INRConfig stored in `{prefix}model` (schema.MODEL, then the decoder's own rules), alone."""
    name = f"{prefix}model"
    raw = check(reader.read_msgpack(name, MODEL_MAX_BYTES), schema.MODEL, name)
    try:
        config = INRConfig.from_dict({k: v for k, v in raw.items() if v is not None})
    except FormatError as e:
        if e.section is not None:
            raise
        raise FormatError(str(e), section=name) from None
    if config.fine_grid_shape() is not None and FINE_GRID_FEATURE not in reader.required_features:
        raise FormatError(f"model has a fine base grid but the file does not list feature {FINE_GRID_FEATURE!r}",
                          section=name)
    if config.mid_grid_shape() is not None and MID_GRID_FEATURE not in reader.required_features:
        raise FormatError(f"model has a mid grid but the file does not list feature {MID_GRID_FEATURE!r}",
                          section=name)
    return config


def check_model(config: INRConfig, name: str, width: int, height: int, frames: int) -> INRConfig:
    """`config` checked against the video it decodes: frame size, frame count, size and decode work."""
    if (config.width, config.height) != (width, height):
        raise FormatError(f"model decodes {config.width}x{config.height} frames, the video section says "
                          f"{width}x{height}", section=name)
    if config.num_frames != frames:
        raise FormatError(f"model holds {config.num_frames} frames, its segment {frames}", section=name)
    limit = max_model_params(width, height, frames)
    if config.num_params(frames) > limit:
        raise FormatError(f"model of {config.num_params(frames)} parameters is larger than a "
                          f"{width}x{height}x{frames} video needs (at most {limit})", section=name)
    work, cap = decode_values(config), max_decode_values(config)
    if work > cap:
        raise FormatError(f"model needs activations of {work} values per frame, more than the {cap} allowed "
                          f"for {config.pad_width}x{config.pad_height} frames", section=name)
    return config


def read_model(reader: NvpReader, prefix: str, video: VideoMetadata, frames: int) -> INRConfig:
    """The INRConfig of one segment, checked against the video it decodes (`check_model`)."""
    return check_model(model_config(reader, prefix), f"{prefix}model", video.width, video.height, frames)


def _routing_context(reader: NvpReader) -> tuple[int, list[INRConfig] | None]:
    """(frames, model config per segment) for the cross-field checks of routing; (0, None) without video."""
    if "video" not in reader:
        return 0, None
    video = read_video(reader)
    configs = [read_model(reader, p, video, b - a) for a, b, p in read_segments(reader, video.frames)]
    return video.frames, configs


def _check_entry(reader: NvpReader, task: str, entry: dict, frames: int, configs: list[INRConfig] | None) -> dict:
    """A routing entry against its schema (with its task's and adapter kind's fields) and the file."""
    where = f"tasks.{task}"
    kind = entry.get("adapter_kind")
    e = check(entry, schema.entry_schema(task, kind if isinstance(kind, str) else None), "routing", where)
    layer = e["inr_layer"]
    if configs is not None and layer >= configs[0].num_blocks:
        raise fail("routing", f"{where}.inr_layer", f"names INR block {layer}, but the model has "
                   f"{configs[0].num_blocks} (0..{configs[0].num_blocks - 1})")
    names = e["adapter_sections"]
    if configs is not None and len(names) != len(configs):
        raise fail("routing", f"{where}.adapter_sections", f"lists {len(names)} adapters for {len(configs)} segments")
    if len(set(names)) != len(names):
        raise fail("routing", f"{where}.adapter_sections", "names a section twice")
    for n in names:
        if n not in reader or reader.info(n).kind != SectionKind.ADAPTER:
            raise fail("routing", f"{where}.adapter_sections", f"names {n!r}, which is not an adapter section")
    sample = e.get("sample_frames")
    if sample is not None and not all(i < frames for i in sample):
        raise fail("routing", f"{where}.sample_frames", f"must list frames of the video (0..{frames - 1})")
    if configs is not None and e.get("in_channels") not in (None, configs[0].block_out_channels(layer)):
        raise fail("routing", f"{where}.in_channels", f"is {e['in_channels']}, INR block {layer} of the first "
                   f"segment gives {configs[0].block_out_channels(layer)}")
    return e


def read_routing(reader: NvpReader) -> dict:
    """The `routing` section ({'version': 1, 'tasks': {name: entry}}), validated; empty when absent.

    The result is a fresh copy (maps of the top level, of `tasks` and of each entry), safe to modify.
    """
    if "routing" not in reader:
        return {"version": 1, "tasks": {}}
    raw = reader.read_msgpack("routing", ROUTING_BASE_BYTES + ROUTING_PER_SECTION_BYTES * len(reader.sections))
    routing = check(raw, schema.ROUTING, "routing")
    tasks = routing.get("tasks") or {}
    frames, configs = _routing_context(reader) if tasks else (0, None)
    return {**routing, "tasks": {name: _check_entry(reader, name, entry, frames, configs)
                                 for name, entry in tasks.items()}}


def read_adapter_meta(meta: Any, section: str, entry: dict, segment: int) -> tuple[tuple[int, int], str]:
    """(out_size, kind) of an adapter bundle's meta (schema.ADAPTER_META), agreeing with its routing entry."""
    m = check(meta, schema.ADAPTER_META, section, "meta")
    kind = m.get("kind") or "linear"
    if kind != (entry.get("adapter_kind") or kind):
        raise fail(section, "meta.kind", f"is {kind!r}, the routing entry says {entry['adapter_kind']!r}")
    for key in ("inr_layer", "injection_point", "out_size"):
        if m.get(key) is not None and entry.get(key) is not None and m[key] != entry[key]:
            raise fail(section, f"meta.{key}", f"is {m[key]!r}, the routing entry says {entry[key]!r}")
    if m.get("segment") is not None and m["segment"] != segment:
        raise fail(section, "meta.segment", f"is {m['segment']}, but the section serves segment {segment}")
    return (m["out_size"][0], m["out_size"][1]), kind


def read_provenance(reader: NvpReader) -> dict:
    """The `provenance` section, validated, as a fresh map (empty when absent); non-finite quality
    figures become None."""
    if "provenance" not in reader:
        return {}
    prov = check(reader.read_msgpack("provenance", PROVENANCE_BASE_BYTES + PROVENANCE_PER_SEGMENT_BYTES * _models(reader)),
                 schema.PROVENANCE, "provenance")
    for key in QUALITY_KEYS:
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
