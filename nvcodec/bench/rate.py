"""Rate points: nvcodec and conventional codecs at matched bits per pixel, with PSNR and MS-SSIM."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import torch

from ..errors import NvcodecError, UsageError
from ..inr.metrics import frame_mse, ms_ssim, quality_from_mse
from ..video.codecs import X265_MIN_SIDE, available_codecs, encode_at_bpp, encode_with_ffmpeg_codec
from .paths import decode_codec_file

CODEC_ALIASES: dict[str, tuple[str, ...]] = {
    "x264": ("libx264",), "h264": ("libx264",),
    "x265": ("libx265",), "hevc": ("libx265",), "h265": ("libx265",),
    "av1": ("libsvtav1", "libaom-av1"),
    "vp9": ("libvpx-vp9",),
}
CODEC_LABELS = {"libx264": "H.264 (x264)", "libx265": "HEVC (x265)", "libsvtav1": "AV1 (SVT-AV1)",
                "libaom-av1": "AV1 (libaom)", "libvpx-vp9": "VP9 (libvpx)"}
EXTENSIONS = {"libx264": ".mp4", "libx265": ".mp4", "libsvtav1": ".mkv", "libaom-av1": ".mkv", "libvpx-vp9": ".webm"}
QUALITY_NOTE = ("psnr: pooled PSNR (MSE over all frames, pixels and RGB channels, peak 255; "
                "nvcodec.inr.metrics), psnr_frame_mean: mean of per-frame PSNRs, psnr_min: worst frame; "
                "ms_ssim: mean over frames; all against the original decoded frames of the input")


def parse_codecs(text: str) -> list[str]:
    """`x264,x265,av1` -> short names, checked against what this FFmpeg build can encode."""
    names = [c.strip().lower() for c in text.split(",") if c.strip()]
    if not names:
        raise UsageError("--codecs needs at least one codec (x264, x265, av1, vp9)")
    for n in names:
        if n not in CODEC_ALIASES:
            raise UsageError(f"unknown codec {n!r} for --codecs (use x264, x265, av1, vp9)")
    if "x264" not in names and "h264" not in names:
        names.insert(0, "x264")
    return list(dict.fromkeys("x264" if n == "h264" else n for n in names))


def encoder_for(short: str) -> str | None:
    """The FFmpeg encoder that implements `short` here, or None when the build has none."""
    have = set(available_codecs())
    return next((e for e in CODEC_ALIASES[short] if e in have), None)


def parse_bpps(text: str | None) -> list[float]:
    """`0.02,0.05,0.1` -> sorted unique positive floats; '' or 'none' -> []."""
    if text is None or text.strip().lower() in ("", "none"):
        return []
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            v = float(part)
        except ValueError:
            raise UsageError(f"--bpps: {part!r} is not a number") from None
        if not 0 < v <= 24:
            raise UsageError(f"--bpps: {v} must be in (0, 24]")
        out.append(v)
    return sorted(set(out))


def quality(decoded: np.ndarray | torch.Tensor, original: np.ndarray) -> dict[str, float]:
    """PSNR (pooled, per-frame mean, worst frame; see `metrics`) and mean MS-SSIM of `decoded` against `original`."""
    a = decoded if isinstance(decoded, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(decoded))
    b = torch.from_numpy(np.ascontiguousarray(original))
    a = a.cpu()
    if a.shape != b.shape:
        raise UsageError(f"decoded frames {tuple(a.shape)} do not match the original {tuple(b.shape)}")
    q = quality_from_mse(torch.cat([frame_mse(a[i:i + 8], b[i:i + 8]) for i in range(0, a.shape[0], 8)]))
    s = torch.cat([ms_ssim(a[i:i + 8], b[i:i + 8], per_frame=True) for i in range(0, a.shape[0], 8)])
    return {"psnr": q["psnr"], "psnr_frame_mean": q["psnr_frame_mean"], "psnr_min": q["psnr_min"],
            "ms_ssim": float(s.mean())}


def codec_point(original: np.ndarray, directory: str, fps: float, short: str, target_bpp: float,
                tag: str, threads: int) -> tuple[dict[str, Any], np.ndarray | None]:
    """Encode `original` with codec `short` near `target_bpp`, decode it, measure quality.

    Returns the record and the decoded frames; the file stays in `directory`. `encode_seconds` is
    one encode at the rate control the search settled on (the search itself is `search_seconds`).
    """
    encoder = encoder_for(short)
    if encoder is None:
        return {"codec": short, "available": False, "target_bpp": target_bpp,
                "note": f"no {short} encoder in this FFmpeg build (have: {', '.join(available_codecs())})"}, None
    h, w = original.shape[1:3]
    if encoder == "libx265" and min(h, w) < X265_MIN_SIDE:
        return {"codec": short, "encoder": encoder, "available": False, "target_bpp": target_bpp,
                "note": f"skipped: libx265 in this FFmpeg build corrupts the heap (process abort in "
                        f"x265::Lookahead::destroy) on some frames smaller than {X265_MIN_SIDE} px, e.g. 48x48"}, None
    path = os.path.join(directory, f"{tag}_{short}{EXTENSIONS[encoder]}")
    t0 = time.perf_counter()
    try:
        enc = encode_at_bpp(original, path, fps, encoder, target_bpp, threads=threads)
    except NvcodecError as exc:
        if short == "x264":
            raise
        return {"codec": short, "encoder": encoder, "available": False, "target_bpp": target_bpp,
                "note": f"{encoder} failed on this clip: {exc}"}, None
    search = time.perf_counter() - t0
    retime = os.path.join(directory, f".retime_{tag}_{short}{EXTENSIONS[encoder]}")
    t0 = time.perf_counter()
    encode_with_ffmpeg_codec(original, retime, fps, encoder, crf=enc.get("crf"), bitrate=enc.get("bitrate"),
                             threads=threads)
    single = time.perf_counter() - t0
    os.remove(retime)
    decoded = decode_codec_file(path, w, h, threads)
    if decoded.shape[0] != original.shape[0]:
        raise UsageError(f"{encoder} produced {decoded.shape[0]} frames for {original.shape[0]}")
    out = {"codec": short, "encoder": encoder, "label": CODEC_LABELS.get(encoder, encoder), "available": True,
           "file": path, "target_bpp": float(target_bpp), "bpp": float(enc["bpp"]), "bytes": int(enc["bytes"]),
           "bitstream_bytes": int(enc["bitstream_bytes"]), "rate_control": enc["mode"],
           "crf": enc.get("crf"), "bitrate": enc.get("bitrate"), "within_tolerance": bool(enc["within_tolerance"]),
           "search_encodes": int(enc["encodes"]), "preset": "encoder default",
           "encode_seconds": single, "search_seconds": search, "threads": threads, **quality(decoded, original)}
    return out, decoded
