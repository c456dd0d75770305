"""Conventional codecs through PyAV, for benchmarks: encode at a CRF, bitrate or target bpp, and random access.

bpp (bits per pixel) is always ``file bytes * 8 / (W * H * N)`` with the file's container
overhead included (the returned dicts also give ``bitstream_bytes``, the packets alone).
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import numpy as np

from nvcodec.errors import InputError, UsageError
from nvcodec.progress import ProgressCallback, emit
from nvcodec.video.reader import (
    _check_path,
    _media_errors,
    _open,
    _png_files,
    _probe_png_dir,
    _read_png_rgb,
    _select_stream,
    _to_rgb,
)
from nvcodec.video.writer import _fps_fraction, _remove, atomic_output, encode_video

__all__ = ["BENCH_CODECS", "available_codecs", "encode_with_ffmpeg_codec", "encode_at_bpp", "decode_frame_at"]

BENCH_CODECS = ("libx264", "libx265", "libaom-av1", "libsvtav1", "libvpx-vp9")
_CRF_RANGE = {"libx264": (0, 51), "libx265": (0, 51), "libaom-av1": (0, 63), "libsvtav1": (1, 63), "libvpx-vp9": (0, 63)}
_FLOAT_CRF = frozenset({"libx264", "libx265"})


def available_codecs() -> list[str]:
    """The encoders of :data:`BENCH_CODECS` this FFmpeg build has."""
    out = []
    for name in BENCH_CODECS:
        try:
            av.Codec(name, "w")
        except Exception:
            continue
        out.append(name)
    return out


def _codec_options(codec: str, preset: str | int | None) -> dict[str, str]:
    opts: dict[str, str] = {}
    if codec == "libvpx-vp9":
        opts["row-mt"] = "1"
    if preset is None:
        return opts
    if codec in ("libx264", "libx265", "libsvtav1"):
        opts["preset"] = str(preset)
    elif codec in ("libvpx-vp9", "libaom-av1"):
        opts["cpu-used"] = str(preset)
    return opts


def _check_clip(frames: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    arr = np.asarray(frames)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[3] != 3 or 0 in arr.shape:
        raise UsageError(f"frames must be a non-empty uint8 (N, H, W, 3) array, got {arr.dtype} {arr.shape}")
    return arr


X265_MIN_SIDE = 64


def _check_codec(codec: str, frames: np.ndarray | None = None) -> None:
    if codec == "libx265" and frames is not None and min(frames.shape[1:3]) < X265_MIN_SIDE:
        # libx265 (4.x, as linked by this FFmpeg) corrupts its heap on such frames and kills the process.
        raise UsageError(f"libx265 cannot encode frames smaller than {X265_MIN_SIDE} px on a side here; use x264")
    if codec not in BENCH_CODECS:
        raise UsageError(f"unknown benchmark codec {codec!r} (use one of {', '.join(BENCH_CODECS)})")
    if codec not in available_codecs():
        raise UsageError(f"encoder {codec!r} is not available in this FFmpeg build (have: {', '.join(available_codecs())})")


def _encode(frames: np.ndarray, path: Path, fps: float, codec: str, *, crf, bitrate, preset, threads) -> dict:
    pix_fmt = "yuv420p"
    return encode_video(
        path, frames, fps, codec=codec, crf=crf, bitrate=bitrate, pix_fmt=pix_fmt,
        options=_codec_options(codec, preset), threads=threads,
    )


def encode_with_ffmpeg_codec(
    frames: np.ndarray,
    path: str | os.PathLike,
    fps: float,
    codec: str,
    *,
    crf: int | float | None = None,
    bitrate: int | None = None,
    preset: str | int | None = None,
    threads: int | None = None,
) -> int:
    """Encode (N, H, W, 3) uint8 frames with ``codec`` (yuv420p) to ``path``; returns the file size in bytes.

    ``crf`` or ``bitrate`` (bits/s) picks the rate control (neither: the encoder's default);
    ``preset`` is ``preset`` for x264/x265/SVT-AV1 and ``cpu-used`` for VP9/libaom.
    """
    arr = _check_clip(frames)
    _check_codec(codec, arr)
    if crf is not None and bitrate is not None:
        raise UsageError("give crf or bitrate, not both")
    return _encode(arr, Path(path), fps, codec, crf=crf, bitrate=bitrate, preset=preset, threads=threads)["bytes"]


def encode_at_bpp(
    frames: np.ndarray,
    path: str | os.PathLike,
    fps: float,
    codec: str,
    target_bpp: float,
    *,
    tolerance: float = 0.1,
    preset: str | int | None = None,
    threads: int | None = None,
    max_encodes: int = 12,
    progress: ProgressCallback | None = None,
) -> dict:
    """Encode so that the file lands near ``target_bpp`` (relative ``tolerance``); keeps the closest try at ``path``.

    Bisects the CRF (fractional for x264/x265, integer otherwise); when no CRF is within
    tolerance (integer steps too coarse, target out of the CRF range) it switches to
    bitrate mode and rescales the bitrate by the observed ratio. Returns ``{"codec",
    "target_bpp", "bpp", "bytes", "bitstream_bytes", "mode": "crf"|"bitrate", "crf" or
    "bitrate", "within_tolerance", "encodes"}``. ``progress`` gets ``stage="encode_at_bpp"``
    events, one per encode, with the ``bpp`` reached in ``info``.
    """
    arr = _check_clip(frames)
    _check_codec(codec, arr)
    if not (isinstance(target_bpp, (int, float)) and math.isfinite(target_bpp) and target_bpp > 0):
        raise UsageError(f"target_bpp must be a positive number, got {target_bpp!r}")
    if not 0 < tolerance < 1:
        raise UsageError(f"tolerance must be in (0, 1), got {tolerance!r}")
    n, h, w = arr.shape[:3]
    pixels = n * h * w
    target = Path(os.fspath(path))
    rate = _fps_fraction(fps)
    tries: list[tuple[float, Path, dict]] = []

    def attempt(**rc) -> float:
        tmp = target.with_name(f".{target.stem}.try{len(tries)}{target.suffix}")
        stats = _encode(arr, tmp, fps, codec, preset=preset, threads=threads, **rc)
        bpp = stats["bytes"] * 8 / pixels
        tries.append((abs(math.log(bpp / target_bpp)), tmp, {**stats, **rc, "bpp": bpp}))
        emit(progress, "encode_at_bpp", len(tries), None, bpp=bpp)
        return bpp

    def ok(bpp: float) -> bool:
        return abs(bpp - target_bpp) <= tolerance * target_bpp

    try:
        lo, hi = _CRF_RANGE[codec]
        lo, hi = float(lo), float(hi)
        found = False
        while len(tries) < max_encodes and hi - lo > (0.05 if codec in _FLOAT_CRF else 0.5):
            mid = (lo + hi) / 2 if codec in _FLOAT_CRF else float(round((lo + hi) / 2))
            if any(t[2].get("crf") == mid for t in tries):
                break
            bpp = attempt(crf=round(mid, 2) if codec in _FLOAT_CRF else int(mid), bitrate=None)
            if ok(bpp):
                found = True
                break
            if bpp > target_bpp:
                lo = mid
            else:
                hi = mid
        if not found:
            bitrate = max(int(target_bpp * h * w * float(rate)), 1000)
            for _ in range(4):
                if len(tries) >= max_encodes + 4:
                    break
                bpp = attempt(crf=None, bitrate=bitrate)
                if ok(bpp):
                    break
                bitrate = max(int(bitrate * target_bpp / bpp), 1000)
        _, best_tmp, best = min(tries, key=lambda t: t[0])
        with atomic_output(target) as out:
            os.replace(best_tmp, out)
    finally:
        for _, tmp, _ in tries:
            _remove(tmp)
    mode = "crf" if best.get("crf") is not None else "bitrate"
    result = {
        "codec": codec,
        "target_bpp": float(target_bpp),
        "bpp": best["bpp"],
        "bytes": best["bytes"],
        "bitstream_bytes": best["bitstream_bytes"],
        "mode": mode,
        "within_tolerance": ok(best["bpp"]),
        "encodes": len(tries),
    }
    result[mode] = best[mode]
    return result


def decode_frame_at(path: str | os.PathLike, index: int, *, stream: int | None = None) -> np.ndarray:
    """Decode frame ``index`` (0-based) as uint8 RGB (H, W, 3): seek to the keyframe at or before it, decode forward.

    Frame times are taken as ``start + index / fps`` (constant frame rate); a seek that
    lands past the target falls back to decoding from the start. Raises UsageError when
    the index is past the end.
    """
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise UsageError(f"frame index must be a non-negative integer, got {index!r}")
    p = _check_path(path)
    if p.is_dir():
        info = _probe_png_dir(p, stream)
        if index >= info.frames:
            raise UsageError(f"frame index {index} is out of range for a {info.frames}-frame video")
        return _read_png_rgb(_png_files(p)[index], info.width, info.height)
    with _media_errors(p), _open(p) as container:
        vs = _select_stream(container, stream, p)
        rate = next((Fraction(r) for r in (vs.average_rate, vs.guessed_rate) if r), None)
        tb = vs.time_base
        start = vs.start_time if vs.start_time is not None else 0
        if rate is None or tb is None:
            return _decode_sequential(container, vs, index, p)
        frame_dur = 1 / (rate * tb)
        target = start + round(index * frame_dur)
        container.seek(int(target), backward=True, any_frame=False, stream=vs)
        for frame in container.decode(vs):
            if frame.pts is None:
                break
            if frame.pts > target + frame_dur / 2:
                break
            if frame.pts >= target - frame_dur / 2:
                return _to_rgb(frame, frame.width, frame.height)
        container.seek(start, backward=True, any_frame=False, stream=vs)
        return _decode_sequential(container, vs, index, p)


def _decode_sequential(container, vs, index: int, p: Path) -> np.ndarray:
    count = 0
    for count, frame in enumerate(container.decode(vs), start=1):
        if count - 1 == index:
            return _to_rgb(frame, frame.width, frame.height)
    if count == 0:
        raise InputError(f"{p}: no decodable video frames")
    raise UsageError(f"frame index {index} is out of range for a {count}-frame video")
