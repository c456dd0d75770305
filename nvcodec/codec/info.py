"""`describe()`: the `nvcodec info` report, from the trailer, index and small metadata sections."""

from __future__ import annotations

import os

from .. import __version__
from ..container import Codec, NvpReader, SectionKind
from .meta import VideoMetadata, finite_number, read_model, read_provenance, read_routing, read_segments, read_video

INFO_SCHEMA_VERSION = 1
KIND_NAMES = {int(k): k.name.lower() for k in SectionKind}
CODEC_NAMES = {int(Codec.RAW): "raw", int(Codec.ZSTD): "zstd", int(Codec.ZSTD_DICT): "zstd-dict-1"}


def _model_summary(reader: NvpReader, video: VideoMetadata, segments: list[tuple[int, int, str]]) -> dict:
    configs = [read_model(reader, prefix, video, b - a) for a, b, prefix in segments]
    first = configs[0]
    stored = sum(s.stored_length for s in reader.sections
                 if s.kind in (SectionKind.INR_BLOCK, SectionKind.INR_HEAD, SectionKind.EMBEDDINGS))
    return {
        "kind": first.kind,
        "blocks": len(first.strides),
        "strides": list(first.strides),
        "channels": list(first.channels),
        "padded_size": [first.pad_width, first.pad_height],
        "embedding": ([first.embed_channels, first.embed_height, first.embed_width]
                      if first.kind in ("hnerv", "hinerv") else None),
        **({"grid_frames": first.grid_frames, "block_grid_frames": list(first.block_grid_frames)}
           if first.kind == "hinerv" else {}),
        **({"fine_grid": [first.fine_grid_frames, first.fine_grid_channels]} if first.fine_grid_frames else {}),
        **({"mid_grid": [first.mid_grid_frames, first.mid_grid_channels]} if first.mid_grid_frames else {}),
        "params": int(sum(c.num_params(frames=b - a) for c, (a, b, _) in zip(configs, segments))),
        "segments": [{"start": a, "stop": b, "prefix": p} for a, b, p in segments],
        "stored_bytes": stored,
    }


def describe(path: str | os.PathLike) -> dict:
    """Everything `nvcodec info --json` prints. Top-level keys are stable (see README)."""
    with NvpReader(path) as reader:
        video = read_video(reader) if "video" in reader else None
        segments = read_segments(reader, video.frames) if video else []
        model = _model_summary(reader, video, segments) if video else None
        provenance = read_provenance(reader)
        tasks = []
        for name, entry in sorted(read_routing(reader)["tasks"].items()):
            row = {"task": name}
            for key in ("inr_layer", "injection_point", "adapter_kind", "cka", "fidelity", "adapter_params", "adapter_params_pct",
                        "teacher", "weights", "weights_random"):
                value = entry.get(key)
                row[key] = value if isinstance(value, (str, bool)) or finite_number(value) else None
            tasks.append(row)
        sections = [{"name": s.name, "kind": KIND_NAMES.get(s.kind, f"unknown({s.kind})"), "codec": CODEC_NAMES.get(s.codec, "raw"),
                     "offset": s.offset, "bytes": s.stored_length, "raw_bytes": s.raw_length, "crc32": f"{s.crc32:08x}"}
                    for s in reader.sections]
        file_size = reader.file_size
        fmt = {"version": f"{reader.version[0]}.{reader.version[1]}", "generation": reader.generation,
               "file_bytes": file_size, "required_features": list(reader.required_features),
               "tail_bytes": reader.tail_bytes, "reader": f"nvcodec {__version__}", "schema": INFO_SCHEMA_VERSION}
    out_video = None
    if video is not None:
        out_video = video.to_dict()
        out_video["duration_s"] = video.frames / video.fps
        out_video["bpp"] = file_size * 8 / (video.width * video.height * video.frames)
        out_video["kbps"] = file_size * 8 / 1000 / (video.frames / video.fps)
        out_video["source_kbps"] = None if video.source_bit_rate is None else video.source_bit_rate / 1000
        out_video["source_bpp"] = (None if video.source_bit_rate is None
                                   else video.source_bit_rate / video.fps / (video.width * video.height))
    quality = {k: provenance.get(k) for k in ("psnr", "psnr_frame_mean", "psnr_min", "ssim")}
    return {
        "file": os.fspath(path),
        "format": fmt,
        "video": out_video,
        "model": model,
        "quality": quality,
        "encode": {k: provenance.get(k) for k in ("tool_version", "created", "device", "dtype", "encode_seconds", "settings")},
        "tasks": tasks,
        "sections": sections,
    }
