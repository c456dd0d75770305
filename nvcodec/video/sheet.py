"""Contact sheets, side-by-side comparisons and feature-map grids as uint8 RGB arrays.

Labels are drawn with a built-in 5x7 bitmap font (ASCII letters, digits and common
punctuation; other characters show as '?'), so no font files or Pillow are needed.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from nvcodec.errors import UsageError

__all__ = ["contact_sheet", "side_by_side", "feature_sheet", "draw_text", "text_width"]

GAP = 4
BACKGROUND = 24
TEXT_COLOR = (255, 255, 255)

_FONT_ROWS: dict[str, tuple[str, ...]] = {
    "0": (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."),
    "4": ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    "5": ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    "6": ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    "7": ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    "8": (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    "9": (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
    "A": (".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "B": ("####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."),
    "C": (".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."),
    "D": ("###..", "#..#.", "#...#", "#...#", "#...#", "#..#.", "###.."),
    "E": ("#####", "#....", "#....", "####.", "#....", "#....", "#####"),
    "F": ("#####", "#....", "#....", "####.", "#....", "#....", "#...."),
    "G": (".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"),
    "H": ("#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "I": (".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "J": ("..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."),
    "K": ("#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"),
    "L": ("#....", "#....", "#....", "#....", "#....", "#....", "#####"),
    "M": ("#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"),
    "N": ("#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"),
    "O": (".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "P": ("####.", "#...#", "#...#", "####.", "#....", "#....", "#...."),
    "Q": (".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"),
    "R": ("####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"),
    "S": (".####", "#....", "#....", ".###.", "....#", "....#", "####."),
    "T": ("#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."),
    "U": ("#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "V": ("#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."),
    "W": ("#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."),
    "X": ("#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"),
    "Y": ("#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."),
    "Z": ("#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"),
    "a": (".....", ".....", ".###.", "....#", ".####", "#...#", ".####"),
    "b": ("#....", "#....", "#.##.", "##..#", "#...#", "#...#", "####."),
    "c": (".....", ".....", ".###.", "#....", "#....", "#...#", ".###."),
    "d": ("....#", "....#", ".##.#", "#..##", "#...#", "#...#", ".####"),
    "e": (".....", ".....", ".###.", "#...#", "#####", "#....", ".###."),
    "f": ("..##.", ".#..#", ".#...", "###..", ".#...", ".#...", ".#..."),
    "g": (".....", ".####", "#...#", "#...#", ".####", "....#", ".###."),
    "h": ("#....", "#....", "#.##.", "##..#", "#...#", "#...#", "#...#"),
    "i": ("..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###."),
    "j": ("...#.", ".....", "..##.", "...#.", "...#.", "#..#.", ".##.."),
    "k": ("#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#."),
    "l": (".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "m": (".....", ".....", "##.#.", "#.#.#", "#.#.#", "#...#", "#...#"),
    "n": (".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#"),
    "o": (".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###."),
    "p": (".....", ".....", "####.", "#...#", "####.", "#....", "#...."),
    "q": (".....", ".....", ".##.#", "#..##", ".####", "....#", "....#"),
    "r": (".....", ".....", "#.##.", "##..#", "#....", "#....", "#...."),
    "s": (".....", ".....", ".###.", "#....", ".###.", "....#", "####."),
    "t": (".#...", ".#...", "###..", ".#...", ".#...", ".#..#", "..##."),
    "u": (".....", ".....", "#...#", "#...#", "#...#", "#..##", ".##.#"),
    "v": (".....", ".....", "#...#", "#...#", "#...#", ".#.#.", "..#.."),
    "w": (".....", ".....", "#...#", "#...#", "#.#.#", "#.#.#", ".#.#."),
    "x": (".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#"),
    "y": (".....", ".....", "#...#", "#...#", ".####", "....#", ".###."),
    "z": (".....", ".....", "#####", "...#.", "..#..", ".#...", "#####"),
    " ": (".....",) * 7,
    ".": (".....", ".....", ".....", ".....", ".....", ".##..", ".##.."),
    ",": (".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."),
    ":": (".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."),
    ";": (".....", ".##..", ".##..", ".....", ".##..", "..#..", ".#..."),
    "-": (".....", ".....", ".....", "#####", ".....", ".....", "....."),
    "+": (".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."),
    "=": (".....", ".....", "#####", ".....", "#####", ".....", "....."),
    "_": (".....", ".....", ".....", ".....", ".....", ".....", "#####"),
    "/": (".....", "....#", "...#.", "..#..", ".#...", "#....", "....."),
    "\\": (".....", "#....", ".#...", "..#..", "...#.", "....#", "....."),
    "(": ("...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."),
    ")": (".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."),
    "[": (".###.", ".#...", ".#...", ".#...", ".#...", ".#...", ".###."),
    "]": (".###.", "...#.", "...#.", "...#.", "...#.", "...#.", ".###."),
    "<": ("...#.", "..#..", ".#...", "#....", ".#...", "..#..", "...#."),
    ">": (".#...", "..#..", "...#.", "....#", "...#.", "..#..", ".#..."),
    "%": ("##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"),
    "#": (".#.#.", ".#.#.", "#####", ".#.#.", "#####", ".#.#.", ".#.#."),
    "*": (".....", "..#..", "#.#.#", ".###.", "#.#.#", "..#..", "....."),
    "?": (".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."),
    "!": ("..#..", "..#..", "..#..", "..#..", "..#..", ".....", "..#.."),
    "'": ("..#..", "..#..", ".#...", ".....", ".....", ".....", "....."),
    '"': (".#.#.", ".#.#.", ".....", ".....", ".....", ".....", "....."),
    "|": ("..#..",) * 7,
    "@": (".###.", "#...#", "#.###", "#.#.#", "#.###", "#....", ".###."),
    "&": (".##..", "#..#.", "#.#..", ".#...", "#.#.#", "#..#.", ".##.#"),
    "^": ("..#..", ".#.#.", "#...#", ".....", ".....", ".....", "....."),
    "~": (".....", ".....", ".#...", "#.#.#", "...#.", ".....", "....."),
    "$": ("..#..", ".####", "#.#..", ".###.", "..#.#", "####.", "..#.."),
}
_GLYPHS = {ch: np.array([[c == "#" for c in row] for row in rows], dtype=bool) for ch, rows in _FONT_ROWS.items()}
_GLYPH_W, _GLYPH_H = 5, 7

# Viridis sampled at 9 points (matplotlib's "viridis"), linearly interpolated to 256 entries.
_VIRIDIS_ANCHORS = np.array([
    [68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
    [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37],
], dtype=np.float64)
_VIRIDIS = np.stack(
    [np.interp(np.linspace(0, 8, 256), np.arange(9), _VIRIDIS_ANCHORS[:, c]) for c in range(3)], axis=1
).round().astype(np.uint8)


def text_width(text: str, scale: int = 1) -> int:
    """Width in pixels of ``text`` drawn by :func:`draw_text`."""
    return max(len(text) * (_GLYPH_W + 1) - 1, 0) * scale


def draw_text(
    image: np.ndarray, text: str, x: int, y: int, *, scale: int = 1, color: tuple[int, int, int] = TEXT_COLOR
) -> None:
    """Draw ``text`` in place onto a uint8 (H, W, 3) image with its top-left corner at (x, y); clipped at the edges."""
    h, w = image.shape[:2]
    for i, ch in enumerate(text):
        glyph = _GLYPHS.get(ch, _GLYPHS["?"])
        if scale > 1:
            glyph = np.kron(glyph, np.ones((scale, scale), dtype=bool))
        gx = x + i * (_GLYPH_W + 1) * scale
        gh, gw = glyph.shape
        x0, y0, x1, y1 = max(gx, 0), max(y, 0), min(gx + gw, w), min(y + gh, h)
        if x0 >= x1 or y0 >= y1:
            continue
        mask = glyph[y0 - y : y1 - y, x0 - gx : x1 - gx]
        image[y0:y1, x0:x1][mask] = color


def contact_sheet(
    frames: Sequence[np.ndarray],
    *,
    columns: int | None = None,
    labels: Sequence[str] | None = None,
    max_width: int | None = 1920,
) -> np.ndarray:
    """Tile frames into a grid (uint8 RGB) with small gaps and optional per-frame labels under each tile.

    Frames are uint8 (H, W, 3) or (H, W) arrays (floats are taken as [0, 1]); tiles are
    the size of the largest frame, downscaled (area averaging) when the sheet would be wider
    than ``max_width`` (``None``: never). ``columns`` defaults to ceil(sqrt(len(frames))).
    """
    imgs = [_as_rgb(f, i) for i, f in enumerate(frames)]
    if not imgs:
        raise UsageError("contact_sheet needs at least one frame")
    if labels is not None and len(labels) != len(imgs):
        raise UsageError(f"got {len(labels)} labels for {len(imgs)} frames")
    n = len(imgs)
    cell_h = max(im.shape[0] for im in imgs)
    cell_w = max(im.shape[1] for im in imgs)
    if columns is None:
        columns = math.ceil(math.sqrt(n))
    elif not isinstance(columns, int) or columns < 1:
        raise UsageError(f"columns must be a positive integer, got {columns!r}")
    columns = min(columns, n)
    if max_width is not None:
        if max_width < 2 * GAP + columns:
            raise UsageError(f"max_width {max_width} is too small for {columns} columns")
        fit_w = (max_width - GAP * (columns + 1)) // columns
        if fit_w < cell_w:
            scale = fit_w / cell_w
            imgs = [_resize(im, max(1, round(im.shape[0] * scale)), max(1, round(im.shape[1] * scale))) for im in imgs]
            cell_h = max(im.shape[0] for im in imgs)
            cell_w = max(im.shape[1] for im in imgs)
    rows = math.ceil(n / columns)
    font = 2 if cell_w >= 320 else 1
    label_h = (_GLYPH_H * font + 2 * GAP) if labels is not None else 0
    sheet = np.full(
        (GAP + rows * (cell_h + label_h + GAP), GAP + columns * (cell_w + GAP), 3), BACKGROUND, dtype=np.uint8
    )
    for i, im in enumerate(imgs):
        r, c = divmod(i, columns)
        y = GAP + r * (cell_h + label_h + GAP)
        x = GAP + c * (cell_w + GAP)
        sheet[y : y + im.shape[0], x : x + im.shape[1]] = im
        if labels is not None:
            text = _fit_text(str(labels[i]), cell_w, font)
            draw_text(sheet, text, x, y + cell_h + GAP, scale=font)
    return sheet


def side_by_side(
    a: np.ndarray, b: np.ndarray, labels: Sequence[str] | None = None, *, max_width: int | None = None
) -> np.ndarray:
    """Two frames next to each other (e.g. original | decoded), optionally labelled, not downscaled by default."""
    return contact_sheet([a, b], columns=2, labels=labels, max_width=max_width)


def feature_sheet(
    feat: np.ndarray,
    *,
    max_channels: int = 64,
    colormap: str = "viridis",
    min_cell: int = 48,
    max_width: int | None = 1920,
) -> np.ndarray:
    """Grid of the first ``max_channels`` channels of a (C, H, W) (or (1, C, H, W)) feature map.

    Each channel is min-max normalised on its own (a constant channel is drawn as 0),
    coloured with ``colormap`` ("viridis" or "gray") and upscaled by an integer factor
    (nearest neighbour) so tiles are at least ``min_cell`` pixels. Accepts numpy arrays and
    CPU/GPU torch tensors.
    """
    if hasattr(feat, "detach"):
        feat = feat.detach().float().cpu().numpy()
    arr = np.asarray(feat, dtype=np.float64)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3 or min(arr.shape) < 1:
        raise UsageError(f"feature_sheet takes a (C, H, W) array, got shape {arr.shape}")
    if colormap not in ("viridis", "gray"):
        raise UsageError(f"colormap must be 'viridis' or 'gray', got {colormap!r}")
    if max_channels < 1:
        raise UsageError(f"max_channels must be at least 1, got {max_channels}")
    arr = np.nan_to_num(arr[:max_channels], nan=0.0, posinf=0.0, neginf=0.0)
    lo = arr.min(axis=(1, 2), keepdims=True)
    span = arr.max(axis=(1, 2), keepdims=True) - lo
    norm = np.where(span > 0, (arr - lo) / np.where(span > 0, span, 1), 0.0)
    idx = np.clip(np.rint(norm * 255), 0, 255).astype(np.uint8)
    tiles = _VIRIDIS[idx] if colormap == "viridis" else np.repeat(idx[..., None], 3, axis=3)
    factor = max(1, math.ceil(min_cell / max(arr.shape[1], arr.shape[2])))
    if factor > 1:
        tiles = tiles.repeat(factor, axis=1).repeat(factor, axis=2)
    return contact_sheet(list(tiles), max_width=max_width)


def _fit_text(text: str, width: int, scale: int) -> str:
    max_chars = max((width // scale + 1) // (_GLYPH_W + 1), 0)
    if len(text) <= max_chars:
        return text
    return text[: max(max_chars - 1, 0)] + "~" if max_chars > 1 else text[:max_chars]


def _as_rgb(frame: np.ndarray, index: int) -> np.ndarray:
    if hasattr(frame, "detach"):
        frame = frame.detach().cpu().numpy()
    arr = np.asarray(frame)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise UsageError(f"frame {index} must be (H, W), (H, W, 3) or (H, W, 4), got shape {arr.shape}")
    arr = arr[:, :, :3]
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        return (np.clip(np.nan_to_num(arr), 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    raise UsageError(f"frame {index} must be uint8 or float in [0, 1], got {arr.dtype}")


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix averaging the input pixels each output pixel covers."""
    edges = np.linspace(0.0, n_in, n_out + 1)
    lo, hi = edges[:-1, None], edges[1:, None]
    pix = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, pix + 1) - np.maximum(lo, pix), 0.0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


def _resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area-average resize of a uint8 (H, W, 3) image (for downscaling tiles)."""
    if img.shape[:2] == (height, width):
        return img
    wy = _area_weights(img.shape[0], height)
    wx = _area_weights(img.shape[1], width)
    out = np.einsum("yh,hwc,xw->yxc", wy, img.astype(np.float32), wx, optimize=True)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
