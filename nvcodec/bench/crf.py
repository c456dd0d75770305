"""Conventional-codec encodes for rate-distortion benchmarks: CRF matching to a target bpp, and the
`ffmpeg` command line for encoders that PyAV's bundled FFmpeg lacks (SVT-AV1).

bpp is always ``file bytes * 8 / (W * H * N)``, container included.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import time
from typing import Any, Callable

import numpy as np

from ..errors import UsageError
from ..video.codecs import available_codecs, encode_with_ffmpeg_codec

ENCODERS = {"x264": "libx264", "x265": "libx265", "svtav1": "libsvtav1"}
CRF_RANGE = {"libx264": (0.0, 51.0), "libx265": (0.0, 51.0), "libsvtav1": (1.0, 63.0)}
INTEGER_CRF = frozenset({"libsvtav1"})
EXTENSIONS = {"libx264": ".mp4", "libx265": ".mp4", "libsvtav1": ".mkv"}
DEFAULT_PRESETS = {"libx264": "medium", "libx265": "medium", "libsvtav1": "8"}
CRF_STEP = 6.0  # about a factor 2 in rate for x264/x265


def ffmpeg_cli_encoders(ffmpeg: str = "ffmpeg") -> set[str]:
    """Encoders the `ffmpeg` command line lists (empty when there is no such program)."""
    exe = shutil.which(ffmpeg)
    if exe is None:
        return set()
    try:
        out = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    return {line.split()[1] for line in out.splitlines() if len(line.split()) > 1 and line.startswith(" V")}


def codec_route(short: str) -> dict[str, Any]:
    """How `short` (x264, x265, svtav1) is encoded here: {"encoder", "via": "pyav"|"ffmpeg-cli"|None, "note"}."""
    if short not in ENCODERS:
        raise UsageError(f"unknown codec {short!r} (use {', '.join(ENCODERS)})")
    enc = ENCODERS[short]
    if enc in available_codecs():
        return {"encoder": enc, "via": "pyav", "note": "PyAV's bundled FFmpeg"}
    if enc in ffmpeg_cli_encoders():
        return {"encoder": enc, "via": "ffmpeg-cli", "note": f"{shutil.which('ffmpeg')} (PyAV's FFmpeg lacks {enc})"}
    return {"encoder": enc, "via": None,
            "note": f"skipped: neither PyAV's FFmpeg nor an `ffmpeg` program here has {enc}"}


def encode_cli(frames: np.ndarray, path: str, fps: float, encoder: str, *, crf: float,
               preset: str | None = None, threads: int | None = None, ffmpeg: str = "ffmpeg") -> int:
    """Encode uint8 RGB frames (N, H, W, 3) as yuv420p with the `ffmpeg` program; returns the file's bytes."""
    exe = shutil.which(ffmpeg)
    if exe is None:
        raise UsageError("no `ffmpeg` program on PATH")
    n, h, w = frames.shape[:3]
    cmd = [exe, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-r", f"{fps:.6g}", "-i", "-", "-c:v", encoder, "-pix_fmt", "yuv420p",
           "-crf", str(int(round(crf)) if encoder in INTEGER_CRF else crf)]
    if preset is not None:
        cmd += ["-preset", str(preset)]
    if threads is not None:
        cmd += ["-threads", str(threads)]
    cmd.append(path)
    proc = subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), capture_output=True, timeout=3600)
    if proc.returncode != 0 or not os.path.exists(path):
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise UsageError(f"ffmpeg {encoder} failed: {msg[-1] if msg else 'exit ' + str(proc.returncode)}")
    return os.path.getsize(path)


def encode_crf(frames: np.ndarray, path: str, fps: float, route: dict[str, Any], crf: float, *,
               preset: str | None, threads: int | None) -> dict[str, Any]:
    """One encode at `crf` through `route` (see `codec_route`): {"crf", "bytes", "bpp", "encode_seconds"}."""
    enc = route["encoder"]
    crf = float(int(round(crf))) if enc in INTEGER_CRF else round(float(crf), 2)
    t0 = time.perf_counter()
    if route["via"] == "pyav":
        size = encode_with_ffmpeg_codec(frames, path, fps, enc, crf=int(crf) if enc in INTEGER_CRF else crf,
                                        preset=preset, threads=threads)
    elif route["via"] == "ffmpeg-cli":
        size = encode_cli(frames, path, fps, enc, crf=crf, preset=preset, threads=threads)
    else:
        raise UsageError(route["note"])
    seconds = time.perf_counter() - t0
    n, h, w = frames.shape[:3]
    size = os.path.getsize(path) if os.path.exists(path) else size
    return {"crf": crf, "bytes": int(size), "bpp": size * 8 / (n * h * w), "encode_seconds": seconds}


def match_bpp(bpp_at: Callable[[float], float], target: float, lo: float, hi: float, *, integer: bool = False,
              tolerance: float = 0.02, max_encodes: int = 8,
              known: dict[float, float] | None = None) -> dict[str, Any]:
    """Find the CRF whose bpp is closest to `target` (bpp falls as CRF rises).

    `bpp_at(crf)` encodes and returns the bpp; `known` holds CRF -> bpp pairs measured before (a
    codec's RD curve), which seed the bracket. Each step interpolates log(bpp) linearly in CRF
    between the closest CRFs on either side of the target (regula falsi), or steps CRF_STEP
    towards the target when only one side is known; it stops within relative `tolerance`, when
    no CRF is left between the brackets (integer CRFs), at the CRF range's end, or after
    `max_encodes` new encodes. Returns {"crf", "bpp", "within_tolerance", "encodes", "tries"}.
    """
    if not (target > 0 and math.isfinite(target)):
        raise UsageError(f"target bpp must be a positive number, got {target!r}")
    seen: dict[float, float] = {float(k): float(v) for k, v in (known or {}).items() if v > 0}
    tries: list[list[float]] = []

    def fmt(c: float) -> float:
        return float(int(round(c))) if integer else round(float(c), 2)

    def err(b: float) -> float:
        return abs(math.log(b / target))

    def done() -> bool:
        return bool(seen) and min(err(b) for b in seen.values()) <= math.log1p(tolerance)

    encodes = 0
    while not done() and encodes < max_encodes:
        above = [c for c, b in seen.items() if b >= target]  # more bits than wanted: raise CRF from here
        below = [c for c, b in seen.items() if b < target]
        c_a = max(above) if above else None
        c_b = min(below) if below else None
        if c_a is not None and c_b is not None:
            if c_b <= c_a:  # non-monotone measurements: stop at the closest
                break
            la, lb = math.log(seen[c_a]), math.log(seen[c_b])
            guess = c_a + (c_b - c_a) * (la - math.log(target)) / (la - lb) if la != lb else (c_a + c_b) / 2
            mid = (c_a + c_b) / 2
            guess = 0.5 * (guess + mid) if encodes >= 2 else guess  # damp slow regula-falsi convergence
            guess = fmt(min(max(guess, c_a), c_b))
            if guess in (c_a, c_b):
                inner = [fmt(c_a + 1), fmt(c_b - 1)] if integer else [fmt(mid)]
                inner = [g for g in inner if c_a < g < c_b]
                if not inner:
                    break
                guess = inner[0] if seen[c_a] - target > target - seen[c_b] or len(inner) == 1 else inner[-1]
        elif c_a is not None:
            guess = fmt(min(c_a + CRF_STEP, hi))
            if guess <= c_a:
                break
        elif c_b is not None:
            guess = fmt(max(c_b - CRF_STEP, lo))
            if guess >= c_b:
                break
        else:
            guess = fmt((lo + hi) / 2)
        if guess in seen:
            break
        bpp = float(bpp_at(guess))
        encodes += 1
        seen[guess] = bpp
        tries.append([guess, bpp])
    if not seen:
        raise UsageError("no encode to match the target bpp")
    crf = min(seen, key=lambda c: err(seen[c]))
    return {"crf": crf, "bpp": seen[crf], "within_tolerance": err(seen[crf]) <= math.log1p(tolerance),
            "encodes": encodes, "tries": tries}
