"""Turning an opened `.nvp` back into things people look at: files, contact sheets, comparisons."""

from __future__ import annotations

import os
from typing import Iterator

import numpy as np
import torch

from ..errors import UsageError
from ..inr.metrics import frame_mse, frame_psnrs, quality_from_mse
from ..video import contact_sheet, feature_sheet, read_frames, side_by_side, write_png, write_png_dir, write_video, write_y4m
from .frames import resolve_range
from .meta import recorded_stream
from .video import NvpVideo

SHEET_MAX_FRAMES = 16


def _numpy_frames(video: NvpVideo, start: int, stop: int, device: str) -> Iterator[np.ndarray]:
    for batch in video.iter_frames(range(start, stop), device=device):
        yield from batch.cpu().numpy()


def export_frames(video: NvpVideo, output: str, *, frames: tuple[int | None, int | None] | None = None,
                  device: str = "auto") -> dict:
    """Write decoded frames to `.mp4`/`.mkv` (H.264), `.y4m` (lossless), or a folder of PNGs (path ending in `/`)."""
    start, stop = resolve_range(frames, len(video))
    stream = _numpy_frames(video, start, stop, device)
    if output.endswith(os.sep) or output.endswith("/") or os.path.isdir(output):
        write_png_dir(output, stream, start_index=start)
        kind = "png"
    elif output.lower().endswith(".y4m"):
        write_y4m(output, stream, video.metadata.fps)
        kind = "y4m"
    elif output.lower().endswith((".mp4", ".mkv", ".mov")):
        write_video(output, stream, video.metadata.fps)
        kind = "video"
    else:
        raise UsageError(f"-o {output}: use a .mp4/.mkv/.mov, .y4m, or a folder path ending in '/'")
    return {"output": output, "kind": kind, "frames": [start, stop]}


def _sheet_indices(start: int, stop: int, limit: int = SHEET_MAX_FRAMES) -> list[int]:
    n = stop - start
    if n <= limit:
        return list(range(start, stop))
    return sorted({start + round(i * (n - 1) / (limit - 1)) for i in range(limit)})


def frame_sheet(video: NvpVideo, path: str, *, frames: tuple[int | None, int | None] | None = None,
                device: str = "auto") -> dict:
    """A contact sheet of up to 16 evenly spaced decoded frames, labelled with their indices."""
    start, stop = resolve_range(frames, len(video))
    idx = _sheet_indices(start, stop)
    decoded = video.frames(idx, device=device).cpu().numpy()
    write_png(path, contact_sheet(list(decoded), labels=[f"#{i}" for i in idx]))
    return {"sheet": path, "frames": idx}


def layer_sheet(video: NvpVideo, path: str, layer: int, *, frames: tuple[int | None, int | None] | None = None,
                device: str = "auto") -> dict:
    """Block `layer`'s feature maps for the first selected frame, one tile per channel."""
    start, _ = resolve_range(frames, len(video))
    feat = video.features(layer, [start], device=device)[0].float().cpu().numpy()
    write_png(path, feature_sheet(feat))
    return {"sheet": path, "layer": layer, "frame": start, "channels": int(feat.shape[0]),
            "size": [int(feat.shape[2]), int(feat.shape[1])]}


def compare(video: NvpVideo, original: str, *, frames: tuple[int | None, int | None] | None = None,
            sheet: str | None = None, device: str = "auto", stream: int | None = None) -> dict:
    """PSNR of the decoded video against the original (`metrics`: pooled, per-frame mean, per frame);
    optional side-by-side sheet.

    Frame i of the file is compared with frame start + i of the source range recorded at encode,
    in the video stream recorded at encode unless `stream` is given.
    """
    start, stop = resolve_range(frames, len(video))
    offset = video.metadata.source_frames[0] if video.metadata.source_frames else 0
    if stream is None:
        stream = recorded_stream(video.reader)
    ref, info = read_frames(original, stream=stream, frames=(start + offset, stop + offset))
    if (info.width, info.height) != (video.metadata.width, video.metadata.height):
        raise UsageError(f"{original} is {info.width}x{info.height}, the .nvp is "
                         f"{video.metadata.width}x{video.metadata.height}: not the same video")
    sheet_idx = set(_sheet_indices(start, stop, 8)) if sheet else set()
    kept: dict[int, np.ndarray] = {}
    mses: list[torch.Tensor] = []
    pos = 0
    for batch in video.iter_frames(range(start, stop), device=device):
        dec = batch.cpu()
        mses.append(frame_mse(dec, torch.from_numpy(ref[pos:pos + dec.shape[0]])))
        for k in range(dec.shape[0]):
            if start + pos + k in sheet_idx:
                kept[start + pos + k] = dec[k].numpy()
        pos += dec.shape[0]
    mse = torch.cat(mses)
    q = quality_from_mse(mse)
    out = {"original": original, "frames": [start, stop], "psnr": q["psnr"], "psnr_frame_mean": q["psnr_frame_mean"],
           "psnr_min": q["psnr_min"], "psnr_per_frame": frame_psnrs(mse)}
    if sheet:
        rows = [side_by_side(ref[i - start], kept[i], (f"orig #{i}", f"nvp {out['psnr_per_frame'][i - start]:.2f}dB"))
                for i in sorted(kept)]
        write_png(sheet, contact_sheet(rows, columns=2 if len(rows) > 1 else 1))
        out["sheet"] = sheet
    return out
