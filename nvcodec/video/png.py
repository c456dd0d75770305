"""A small PNG encoder (numpy + zlib) and an atomic PNG writer.

Per row, the filter (None, Sub, Up, Average, Paeth) with the smallest sum of absolute
signed residuals is chosen, the heuristic libpng uses by default.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

from nvcodec.errors import UsageError, no_space_as_error

__all__ = ["encode_png", "write_png"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}


def encode_png(array: np.ndarray, *, compress_level: int = 6) -> bytes:
    """Encode a uint8 or uint16 image (H, W), (H, W, 1), (H, W, 2), (H, W, 3) or (H, W, 4) as PNG bytes.

    1 channel is grey, 2 grey+alpha, 3 RGB, 4 RGBA; uint16 gives a 16-bit PNG.
    """
    arr = np.asarray(array)
    if arr.dtype not in (np.uint8, np.uint16):
        raise UsageError(f"PNG encoder takes uint8 or uint16 arrays, got {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in _COLOR_TYPE:
        raise UsageError(f"PNG encoder takes (H, W) or (H, W, C) arrays with C in 1..4, got shape {arr.shape}")
    height, width, channels = arr.shape
    if not (1 <= height < 2**31 and 1 <= width < 2**31):
        raise UsageError(f"PNG image size must be at least 1x1, got {width}x{height}")
    if not 0 <= compress_level <= 9:
        raise UsageError(f"compress_level must be in 0..9, got {compress_level}")
    depth = 8 if arr.dtype == np.uint8 else 16
    raw = np.ascontiguousarray(arr.astype(">u2") if depth == 16 else arr).view(np.uint8)
    rows = raw.reshape(height, width * channels * depth // 8)
    bpp = channels * depth // 8
    filtered = _filter_rows(rows, bpp)
    ihdr = struct.pack(">IIBBBBB", width, height, depth, _COLOR_TYPE[channels], 0, 0, 0)
    idat = zlib.compress(filtered.tobytes(), compress_level)
    return _SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def write_png(path: str | os.PathLike, array: np.ndarray, *, compress_level: int = 6) -> None:
    """Write ``array`` as a PNG file atomically (temp file next to ``path``, then rename)."""
    from nvcodec.video.atomic import atomic_output

    data = encode_png(array, compress_level=compress_level)
    with atomic_output(Path(path)) as tmp, no_space_as_error(path):
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _filter_rows(rows: np.ndarray, bpp: int) -> np.ndarray:
    """Return (H, 1 + row_bytes) uint8: per row the filter byte and the filtered bytes."""
    x = rows.astype(np.int16)
    a = np.zeros_like(x)
    a[:, bpp:] = x[:, :-bpp]
    b = np.zeros_like(x)
    b[1:] = x[:-1]
    c = np.zeros_like(x)
    c[1:, bpp:] = x[:-1, :-bpp]
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    candidates = np.stack([x, x - a, x - b, x - ((a + b) >> 1), x - paeth]) & 0xFF
    signed = np.where(candidates > 127, 256 - candidates, candidates)
    best = signed.sum(axis=2, dtype=np.int64).argmin(axis=0)
    out = np.empty((rows.shape[0], rows.shape[1] + 1), dtype=np.uint8)
    out[:, 0] = best
    out[:, 1:] = candidates[best, np.arange(rows.shape[0])]
    return out
